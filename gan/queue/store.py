"""``gan-queue store``: the resume store's states (gan.store), listed or cleaned."""

from __future__ import annotations

import argparse

from gan.errors import GanError


def store_command(repo, args: argparse.Namespace) -> int:
    """List the resume store's states, or with --clean delete those no stage is using."""
    from gan import store
    from gan.config import load_section, read_params

    setting = "auto"
    if args.params.is_file():
        setting = load_section(read_params(args.params), "resume").store
    folder = store.folder(setting)
    if folder is None:
        print("gan-queue: resume.store is off: no state is kept outside the workspace")
        return 0
    if folder.is_dir() and not store.marked(folder):
        raise GanError(f"{folder}: not a resume store (no {store.MARK} in it: the store has "
                       "written nothing there); nothing listed or deleted")
    if args.clean:
        gone, left = store.clean(folder)
        kept = f"; {left} in use by a running stage kept" if left else ""
        print(f"gan-queue: deleted {gone} states from {folder}{kept}")
    else:
        from gan.resume import read_state  # torch only for this listing

        lines = store.describe(folder, lambda path: read_state(path)["step"])
        print(f"{folder}: {len(lines)} state{'s' if len(lines) != 1 else ''}")
        for line in lines:
            print(f"  {line}")
    skipped = store.foreign(folder)
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        print(f"gan-queue: left alone {len(skipped)} entries of {folder} that the store did "
              f"not write: {shown}")
    return 0
