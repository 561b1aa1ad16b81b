#!/usr/bin/env bash
# Carry a file larger than one device call may carry (64 MiB) over several calls to one warm
# machine: a path carried once stays there while the machine is warm (device README).
#   here:   bash benchmarks/stage.sh split FILE NAME   -> .stage/NAME-1 ... .stage/NAME-K
#           (each a folder with one part of at most 55 MiB and the manifest: file name, parts, sha256)
#   there:  call k carries .stage/NAME-k (beside whatever else it carries); then
#           bash benchmarks/stage.sh join NAME DIR  -> DIR/<the file's name>, its sha256 checked;
#           exit 2 naming the parts not there yet.
set -eu
PART_MIB=${PART_MIB:-55}
case "${1:-}" in
split)
  [ $# -eq 3 ] && [ -s "$2" ] || { echo "usage: stage.sh split FILE NAME (FILE must exist, not empty)" >&2; exit 2; }
  file=$2 name=$3; rm -rf .stage/"$name"-[0-9]* .stage/tmp."$name"; mkdir -p .stage/tmp."$name"
  split -b "${PART_MIB}M" -d -a 3 "$file" .stage/tmp."$name"/p
  parts=$(ls .stage/tmp."$name" | wc -l); sum=$(sha256sum "$file" | cut -d' ' -f1); k=0
  for p in .stage/tmp."$name"/p*; do
    k=$((k + 1)); mkdir -p .stage/"$name-$k"; mv "$p" .stage/"$name-$k"/part
    printf '%s\n%s\n%s\n' "$(basename "$file")" "$parts" "$sum" > .stage/"$name-$k"/manifest
  done
  rmdir .stage/tmp."$name"
  echo "$parts parts: carry one per call: $(for i in $(seq 1 "$parts"); do printf '.stage/%s-%s ' "$name" "$i"; done)";;
join)
  [ $# -eq 3 ] || { echo "usage: stage.sh join NAME DIR" >&2; exit 2; }
  name=$2 dir=$3
  [ -f .stage/"$name"-1/manifest ] || { echo "error: no part of $name here (.stage/$name-1)" >&2; exit 2; }
  { read -r base; read -r parts; read -r sum || [ -n "$sum" ]; } < .stage/"$name"-1/manifest
  missing=""; for i in $(seq 1 "$parts"); do [ -f .stage/"$name-$i"/part ] || missing="$missing $name-$i"; done
  [ -z "$missing" ] || { echo "error: parts not carried yet:$missing" >&2; exit 2; }
  mkdir -p "$dir"; : > "$dir/$base.tmp"
  for i in $(seq 1 "$parts"); do cat .stage/"$name-$i"/part >> "$dir/$base.tmp"; done
  [ "$(sha256sum "$dir/$base.tmp" | cut -d' ' -f1)" = "$sum" ] || { rm -f "$dir/$base.tmp"; echo "error: $base: sha256 differs after joining" >&2; exit 2; }
  mv "$dir/$base.tmp" "$dir/$base"; echo "$dir/$base";;
*) echo "usage: stage.sh split FILE NAME | join NAME DIR" >&2; exit 2;;
esac
