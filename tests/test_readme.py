"""The README's "Train on your own data" walkthrough, run as written on a tiny dataset.

The YAML and the ``semiseg`` commands between the walkthrough markers are taken from the README; the
test supplies a tiny ``my_dataset`` and ``new_scans`` and only shrinks ``semiseg train`` (iterations,
patch and network size) so that it runs in seconds.
"""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from semiseg.cli import main
from tests.conftest import write_msd

README = Path(__file__).resolve().parents[1] / "README.md"
SHRINK = ["train.iterations=4", "train.val_every=2", "train.checkpoint_every=2", "train.batch_size=2",
          "train.unlabeled_batch_size=2", "data.patch_size=[32,32]", "network.kwargs={features: [4, 8, 16]}",
          "train.progress=off"]


def walkthrough() -> tuple[str, list[str]]:
    text = README.read_text()
    block = text[text.index("<!-- walkthrough:start"):text.index("<!-- walkthrough:end -->")]
    yaml_text = re.search(r"```yaml\n(.*?)```", block, re.S).group(1)
    yaml_text = "\n".join(line[3:] if line.startswith("   ") else line for line in yaml_text.splitlines())
    commands = [line.strip() for b in re.findall(r"```bash\n(.*?)```", block, re.S) for line in b.splitlines()
                if line.strip().startswith("semiseg ")]
    return yaml_text, commands


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch):
    yaml_text, commands = walkthrough()
    assert [c.split()[1] for c in commands] == ["verify", "train", "evaluate", "predict"]
    write_msd(tmp_path / "my_dataset", n_cases=8, unlabeled=2)
    (tmp_path / "new_scans").mkdir()
    for name in ("case00_0000.nii.gz", "case01_0000.nii.gz"):
        shutil.copy(tmp_path / "my_dataset" / "imagesTr" / name, tmp_path / "new_scans" / name)
    (tmp_path / "my_config.yaml").write_text(yaml_text)
    monkeypatch.chdir(tmp_path)
    for cmd in commands:
        argv = shlex.split(cmd)[1:]
        if argv[0] == "train":
            argv += SHRINK
        assert main(argv) == 0, cmd
    assert (tmp_path / "runs" / "my_first_run" / "eval_test" / "summary.csv").is_file()
    assert sorted(p.name for p in (tmp_path / "predictions").iterdir()) == ["case00.nii.gz", "case01.nii.gz"]
