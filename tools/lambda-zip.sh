#!/bin/sh
# tools/lambda-zip.sh TIDE ZIP: the AWS Lambda package (make lambda).
#
#   bootstrap   what Lambda's OS-only runtime (provided.al2023) runs: tide
#               lambda, through the loader bundled beside it
#   tide        the binary, stripped (the scenarios and Lua modules are in it)
#   lib/        every shared library `ldd TIDE` lists, the loader
#               ld-linux-x86-64.so.2 included, stripped of what linking at
#               run time does not need
#
# tide runs with the libraries it was built against, whatever glibc the
# runtime image has. Prints the zip's size and the unzipped size.
set -eu
bin=$1
zip=$2
case $zip in /*) ;; *) zip=$(pwd)/$zip ;; esac
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir "$stage/lib"

missing=$(ldd "$bin" | awk '/not found/ { print $1 }')
if [ -n "$missing" ]; then
    echo "lambda-zip: $bin needs libraries this machine lacks: $missing" >&2
    exit 1
fi
# "libx.so.N => /path (0x...)" and the loader's "/lib64/ld-linux-x86-64.so.2 (0x...)"
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
for lib in $libs; do
    cp -L "$lib" "$stage/lib/"
done
[ -f "$stage/lib/ld-linux-x86-64.so.2" ] || { echo "lambda-zip: ldd $bin lists no ld-linux-x86-64.so.2" >&2; exit 1; }
cp "$bin" "$stage/tide"
strip --strip-unneeded "$stage/tide" "$stage"/lib/*

cat > "$stage/bootstrap" <<'SH'
#!/bin/sh
# AWS Lambda runs this (runtime provided.al2023): tide's custom runtime loop,
# with the libraries tide was built against, through their own loader.
case $0 in */*) here=${0%/*} ;; *) here=. ;; esac
dir=${LAMBDA_TASK_ROOT:-$here}
exec "$dir/lib/ld-linux-x86-64.so.2" --library-path "$dir/lib" "$dir/tide" lambda "$@"
SH
chmod 755 "$stage/bootstrap" "$stage/tide" "$stage/lib/ld-linux-x86-64.so.2"
chmod 644 $(ls "$stage"/lib/* | grep -v '/ld-linux-x86-64.so.2$')

rm -f "$zip"
(cd "$stage" && zip -q -9 -X -r "$zip" bootstrap tide lib)
zipped=$(stat -c %s "$zip")
unzipped=$(cat "$stage/bootstrap" "$stage/tide" "$stage"/lib/* | wc -c)
echo "$zip: $zipped bytes zipped ($((zipped / 1024)) KiB), $unzipped bytes unzipped ($((unzipped / 1024)) KiB), $(ls "$stage/lib" | wc -l) libraries"
