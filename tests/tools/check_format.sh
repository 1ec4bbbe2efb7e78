#!/usr/bin/env bash
# check_format: the C sources follow .clang-format.
#
# Runs `clang-format --dry-run --Werror` (Debian's clang-format, installed by
# deploy/local/install-deps.sh) over every tracked .c and .h file of
# common/, services/, tests/ and bench/, and prints each file it would
# change with the first of its warnings. Exit status: 0 all formatted, 1
# some file is not, 2 cannot run (no clang-format, not a git checkout).
#
# Usage: tests/tools/check_format.sh [FILE...]   (default: every C source)
# To fix a file: clang-format -i FILE
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT" || exit 2
CLANG_FORMAT="${CLANG_FORMAT:-clang-format}"
if ! command -v "$CLANG_FORMAT" >/dev/null 2>&1; then
  echo "check_format: $CLANG_FORMAT not found (deploy/local/install-deps.sh installs it)" >&2
  exit 2
fi
if [ ! -f .clang-format ]; then
  echo "check_format: no .clang-format in $ROOT" >&2
  exit 2
fi

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files -- 'common/*.[ch]' 'services/*.[ch]' \
                                        'tests/*.[ch]' 'bench/*.[ch]')
  if [ "${#files[@]}" -eq 0 ]; then
    echo "check_format: no C sources found (not a git checkout?)" >&2
    exit 2
  fi
fi

bad=0
for f in "${files[@]}"; do
  if ! out="$("$CLANG_FORMAT" --style=file --dry-run --Werror "$f" 2>&1)"; then
    bad=$((bad + 1))
    printf '%s\n' "$out" | head -n 3
  fi
done
if [ "$bad" -gt 0 ]; then
  echo "check_format: $bad of ${#files[@]} files are not formatted (clang-format -i FILE)" >&2
  exit 1
fi
echo "check_format: ok (${#files[@]} files)"
