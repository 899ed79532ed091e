# Stand-in for mailhog/mailhog:v1.0.1, for scripts/compose-run.sh only (no container registry is
# reachable here): SMTP on 1025 and, on 8025, the part of MailHog's HTTP API that the run reads
# (GET /api/v2/messages, GET and DELETE /api/v1/messages) and a plain HTML list of the mail.
# Debian 12's Python and aiosmtpd; the server is mailcatcher.py, beside this file.
FROM debian:12.15-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-aiosmtpd \
    && rm -rf /var/lib/apt/lists/*
COPY mailcatcher.py /usr/local/lib/standin/mailcatcher.py
USER 65534:65534
EXPOSE 1025 8025
CMD ["python3", "/usr/local/lib/standin/mailcatcher.py"]
