#!/bin/sh
# Print the input upper-cased. Nothing is written to $TMP_OUTPUT_DIR, so OSCAR returns
# this output as the (plain text) response. Only ASCII letters change: the C locale is
# forced so every tr behaves alike (busybox, GNU, BSD) and multi-byte UTF-8 passes intact.
set -eu
LC_ALL=C tr 'abcdefghijklmnopqrstuvwxyz' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ' < "$INPUT_FILE_PATH"
