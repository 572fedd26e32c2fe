#!/bin/sh
# Write "<input name>.gz" to $TMP_OUTPUT_DIR. Exactly one output file makes OSCAR answer
# with its base64; -n leaves the name and time out of the header so the output only
# depends on the input.
set -eu
level="${GZIP_LEVEL:-6}"
name=$(basename "$INPUT_FILE_PATH")
gzip -c -n "-$level" < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name.gz"
echo "compressed $(wc -c < "$INPUT_FILE_PATH") bytes" >&2
