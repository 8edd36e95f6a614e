"""Issue #21 item 8: the README refers only to files that exist, and the output folders of its
examples are git-ignored (running an example leaves `git status` clean)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BASES = (ROOT, ROOT / "PatchSamplerLib", ROOT / "PatchSamplerLib" / "data", ROOT / "PatchSampler")
PLACEHOLDER = re.compile(r"[<>*]|DIR|FILE|\.\.\.")
FENCED = "\n".join(re.findall(r"^```[\w-]*\n(.*?)^```", README, flags=re.S | re.M))   # every block, any language
CODE = re.sub(r"(^|\s)#.*$", "", FENCED, flags=re.M)                                     # comments are prose
OUT_FOLDERS = sorted(set(re.findall(r"--out ([\w./-]+)", CODE)) - {"DIR", "FILE"})


def _exists(token: str) -> bool:
    return any((base / token.rstrip("/.,:")).exists() for base in BASES)


def test_inline_paths_exist():
    """Every `path/with/slashes` in the text (placeholders and install locations aside)."""
    tokens = {t for t in re.findall(r"`([^`\s]+)`", README) if "/" in t and not PLACEHOLDER.search(t)
              and not t.startswith(("http", "qt-scripted-modules/", "--"))}
    missing = [t for t in sorted(tokens) if not _exists(t) and t.rstrip("/") + "/" not in
               {f.rstrip("/") + "/" for f in OUT_FOLDERS + ["demo-output"]}]
    assert missing == []


def test_input_files_of_the_examples_exist():
    """Files the example commands read (--input, --prior, --sampler-model, --known-mask,
    --reference, --data), unless an earlier example writes them (under one of its --out folders)."""
    inputs = re.findall(r"--(?:input|prior|sampler-model|known-mask|reference|data) ([\w./-]+/[\w./-]+)", CODE)
    made = tuple(f.rstrip("/") + "/" for f in OUT_FOLDERS)
    missing = [p for p in inputs if not PLACEHOLDER.search(p) and not p.startswith(made) and not _exists(p)]
    assert missing == []


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_output_folders_of_the_examples_are_git_ignored():
    folders = OUT_FOLDERS + ["demo-output"]
    assert folders, "no example --out found"
    ignored = subprocess.run(["git", "check-ignore", *[f"{f.rstrip('/')}/x" for f in folders]], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert sorted(ignored) == sorted(f"{f.rstrip('/')}/x" for f in folders)
