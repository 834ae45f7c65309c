"""One thin script per DVC stage (see dvc.yaml), each run as python -m stages.<name>."""
