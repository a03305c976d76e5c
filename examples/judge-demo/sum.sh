#!/bin/sh
# A "solution": for each line "a b" of the input, print a + b.
while read -r a b; do
  echo $((a + b))
done
