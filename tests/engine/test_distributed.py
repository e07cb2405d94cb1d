"""Data-parallel training on CPU (Gloo): ranks see different batches yet end with identical weights."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _worker(rank, world, port, root, run_dir, out_dir, method):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from semiseg.config import load_config
    from semiseg.engine.trainer import Trainer
    from tests.conftest import tiny_overrides

    ov = tiny_overrides(root) + ["train.device=cpu", "train.iterations=3", "train.val_every=3", "train.checkpoint_every=3",
                                 f"method.name={method}"]
    if method != "supervised":
        ov += ["train.unlabeled_batch_size=2", "split.unlabeled=rest"]
    trainer = Trainer(load_config("synthbrain2d_supervised", ov), run_dir)
    seen = []
    original = trainer._train_step

    def record(labeled, unlabeled):
        seen.append(labeled["image"].sum().item())
        return original(labeled, unlabeled)

    trainer._train_step = record
    trainer.fit()
    torch.save({"state": trainer.method.state_dict(), "seen": seen}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["supervised", "adversarial"])
def test_two_ranks_average_gradients_and_agree(msd_dataset, tmp_path, method):
    port = 29500 + (os.getpid() % 1000) + (7 if method == "adversarial" else 0)
    mp.spawn(_worker, args=(2, port, str(msd_dataset), str(tmp_path / "run"), str(tmp_path), method), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["seen"] != r1["seen"]  # each rank drew its own batches
    for k, v in r0["state"].items():
        if k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # batch-norm statistics stay per rank
        torch.testing.assert_close(r1["state"][k], v, rtol=0, atol=0, msg=k)
    assert (tmp_path / "run" / "checkpoint_final.pt").is_file() and (tmp_path / "run" / "splits.json").is_file()
    env = (tmp_path / "run" / "environment.json").read_text()
    assert "2 ranks" in env
