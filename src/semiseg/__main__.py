"""``python -m semiseg ...`` (what ``torchrun --nproc_per_node N -m semiseg train ...`` runs on each rank)."""

from semiseg.cli import run

if __name__ == "__main__":
    run()
