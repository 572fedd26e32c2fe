#!/bin/sh
# Grey-scale the input image (the FDL example of the OSCAR reference, section 2.3).
FILE_NAME=$(basename "$INPUT_FILE_PATH")
convert "$INPUT_FILE_PATH" -colorspace Gray "$TMP_OUTPUT_DIR/$FILE_NAME"
