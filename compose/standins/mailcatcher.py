"""Stand-in for MailHog, for scripts/compose-run.sh only (mailhog.Dockerfile).

SMTP on 0.0.0.0:1025 accepts every message and keeps it in memory; HTTP on 0.0.0.0:8025 answers the
part of MailHog's API that the run reads, in MailHog's shapes:

    GET    /api/v2/messages   {"total", "count", "start", "items": [message, ...]}, newest first
    GET    /api/v1/messages   [message, ...], newest first
    DELETE /api/v1/messages   drops every message
    GET    /                  a plain HTML list (subject, sender, recipients, text)

A message has "ID", "From" and "To" (MailHog's paths: Mailbox, Domain), "Content" ("Headers",
"Body", "Size"), "Created" and "Raw" ("From", "To", "Data": the message as received).
Not MailHog: no MIME tree, no search, no release, no web UI beyond the list.
"""

import email
import email.policy
import html
import json
import signal
import sys
import threading
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

SMTP_PORT = 1025
HTTP_PORT = 8025

MESSAGES = []
LOCK = threading.Lock()


def mailhog_path(address):
    mailbox, _, domain = address.partition("@")
    return {"Relays": None, "Mailbox": mailbox, "Domain": domain, "Params": ""}


class Catcher:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        data = raw.decode("utf-8", "replace")
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        headers = {}
        for key, value in parsed.items():
            headers.setdefault(key, []).append(str(value))
        _, _, body = data.replace("\r\n", "\n").partition("\n\n")
        message = {
            "ID": f"{uuid.uuid4()}@mailcatcher",
            "From": mailhog_path(envelope.mail_from),
            "To": [mailhog_path(r) for r in envelope.rcpt_tos],
            "Content": {"Headers": headers, "Body": body, "Size": len(raw), "MIME": None},
            "Created": datetime.now(timezone.utc).isoformat(),
            "MIME": None,
            "Raw": {"From": envelope.mail_from, "To": list(envelope.rcpt_tos), "Data": data,
                    "Helo": session.host_name or ""},
        }
        with LOCK:
            MESSAGES.insert(0, message)
        subject = headers.get("Subject", [""])[0]
        print(f"mail from {envelope.mail_from} to {', '.join(envelope.rcpt_tos)}: {subject}", flush=True)
        return "250 OK: message accepted"


def text_of(message):
    parsed = email.message_from_string(message["Raw"]["Data"], policy=email.policy.default)
    part = parsed.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


class Api(BaseHTTPRequestHandler):
    def send(self, status, body, content_type="application/json"):
        payload = body.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        with LOCK:
            messages = list(MESSAGES)
        path = self.path.split("?", 1)[0]
        if path == "/api/v2/messages":
            self.send(200, json.dumps({"total": len(messages), "count": len(messages), "start": 0,
                                       "items": messages}))
        elif path == "/api/v1/messages":
            self.send(200, json.dumps(messages))
        elif path == "/":
            rows = []
            for m in messages:
                h = m["Content"]["Headers"]
                rows.append(
                    "<article><h2>{}</h2><p>from {} to {}, {}</p><pre>{}</pre></article>".format(
                        html.escape(h.get("Subject", [""])[0]), html.escape(m["Raw"]["From"]),
                        html.escape(", ".join(m["Raw"]["To"])), html.escape(m["Created"]),
                        html.escape(text_of(m))))
            self.send(200, "<!doctype html><title>Mail (MailHog stand-in)</title>"
                           f"<h1>{len(messages)} message(s)</h1>" + "".join(rows),
                      "text/html; charset=utf-8")
        else:
            self.send(404, json.dumps({"error": "not found"}))

    def do_DELETE(self):
        if self.path.split("?", 1)[0] == "/api/v1/messages":
            with LOCK:
                MESSAGES.clear()
            self.send(200, "")
        else:
            self.send(404, json.dumps({"error": "not found"}))

    def log_message(self, fmt, *args):
        pass


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    smtp = Controller(Catcher(), hostname="0.0.0.0", port=SMTP_PORT, ready_timeout=10)
    smtp.start()
    print(f"MailHog stand-in: SMTP on :{SMTP_PORT}, HTTP on :{HTTP_PORT}", flush=True)
    try:
        ThreadingHTTPServer(("0.0.0.0", HTTP_PORT), Api).serve_forever()
    finally:
        smtp.stop()


if __name__ == "__main__":
    main()
