"""Compare outputs of two runs of the workflow file by file: python .ci/same_outputs.py RESULTS_A RESULTS_B PATH...

Every file under each PATH (relative to both results folders) must exist in both with the same bytes; a safetensors
file's header is compared in a canonical key order (safetensors writes its metadata map in an order that changes
from process to process). Files set aside after a failed load (*.corrupt, *.invalid) are skipped. Exit status 1 and a list on any difference."""

import json
import sys
from pathlib import Path


def content(path: Path) -> bytes:
    blob = path.read_bytes()
    if path.suffix != ".safetensors":
        return blob
    n = int.from_bytes(blob[:8], "little")
    return json.dumps(json.loads(blob[8:8 + n]), sort_keys=True).encode() + blob[8 + n:]


def files(root: Path, rel: str) -> dict[str, Path]:
    top = root / rel
    found = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p for p in found if p.suffix not in (".corrupt", ".invalid")}


def main(a: str, b: str, *paths: str) -> int:
    problems = []
    for rel in paths:
        fa, fb = files(Path(a), rel), files(Path(b), rel)
        if not fa:
            problems.append(f"{rel}: nothing in {a}")
        problems += [f"{k}: only in {a}" for k in sorted(fa.keys() - fb.keys())]
        problems += [f"{k}: only in {b}" for k in sorted(fb.keys() - fa.keys())]
        problems += [f"{k}: differs" for k in sorted(fa.keys() & fb.keys()) if content(fa[k]) != content(fb[k])]
    print("\n".join(problems) or f"same files ({', '.join(paths)})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
