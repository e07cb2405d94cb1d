"""Every broken input of :mod:`tests.bad_inputs.cases` is rejected (or warned about) with a clear message,
before any training step, without a traceback, and the user's files are byte-identical afterwards."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import pytest

from semiseg.cli import main
from tests.bad_inputs.cases import CASES, Case


def snapshot(root: Path) -> dict[str, str]:
    """Every file (and link target) under ``root`` -> its content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath) / name
            if p.is_symlink():
                out[str(p)] = "link:" + os.readlink(p)
            else:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_the_catalogue_is_large_and_spans_every_layout():
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES)
    counts = Counter(c.layout for c in CASES)
    assert all(counts[k] >= 10 for k in ("msd", "h5", "folder2d", "config")), counts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_rejected_or_warned_clearly(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    argv, named = case.build(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = main(argv)  # an unexpected exception (a traceback) fails the test here
    out, err = capsys.readouterr()
    text = out + err
    assert code == case.exit_code, f"exit {code}, expected {case.exit_code}:\n{text}"
    assert "Traceback" not in text
    if case.warning:
        assert "warning:" in text
    assert named.name in text, f"the message does not name {named.name}:\n{text}"
    for fragment in case.fragments:
        assert fragment in text, f"missing '{fragment}' in:\n{text}"
    # no training step ran: no checkpoint, no training metrics anywhere
    assert not list(tmp_path.rglob("checkpoint_*.pt"))
    for metrics in tmp_path.rglob("metrics.csv"):
        assert ",train," not in metrics.read_text()
    # the user's files are unchanged (a run folder semiseg created may appear; nothing of the user's changes)
    after = snapshot(tmp_path)
    for path, digest in before.items():
        assert after.get(path) == digest, f"{path} was changed or removed"
