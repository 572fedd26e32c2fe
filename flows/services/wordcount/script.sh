#!/bin/sh
# Count the words of the uploaded object and write "<basename>.count"; OSCAR uploads it
# to the output path (wordcount/out). The echo lines end up in the job's logs.
set -eu
name=$(basename "$INPUT_FILE_PATH")
words=$(wc -w < "$INPUT_FILE_PATH" | tr -d ' \t')
printf '%s\n' "$words" > "$TMP_OUTPUT_DIR/$name.count"
echo "${STORAGE_OBJECT_KEY:-$name}: $words words"
