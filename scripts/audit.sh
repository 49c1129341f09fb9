#!/usr/bin/env bash
# Known vulnerabilities in the locked dependencies (requirements.lock), with pip-audit and
# PyPI's vulnerability data. Fails when any is found. pip-audit runs from its own venv
# (.venv-audit) so its dependencies never mix with the project's.
# Where the vulnerability service cannot be reached (this sandbox serves PyPI's package
# index but not its JSON API), pip-audit can check nothing: the script says so loudly and
# lists the packages left unaudited, rather than pretend they are clean.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-audit/bin/pip-audit ] || { "$PYTHON" -m venv .venv-audit && .venv-audit/bin/python -m pip install -q 'pip-audit==2.10.1'; }
report=$(mktemp)
set +e
.venv-audit/bin/pip-audit --requirement requirements.lock --no-deps --disable-pip --progress-spinner off \
  --desc on --format columns --output "$report" 2> "$report.err"
status=$?
set -e
cat "$report"
total=$(grep -vc '^#' requirements.lock)
unaudited=$(grep -c 'could not be audited' "$report" || true)
if [ "$status" -ne 0 ]; then
  cat "$report.err" >&2
  echo "audit: FAILED (pip-audit exit $status): known vulnerabilities above, or pip-audit could not run" >&2
  exit "$status"
fi
if [ "$unaudited" -gt 0 ]; then
  echo "audit: WARNING: $unaudited of $total locked packages could not be audited" \
       "(the vulnerability service did not answer for them); no known vulnerability in the rest" >&2
else
  echo "audit: $total locked packages, no known vulnerabilities"
fi
