"""One thin script per DVC stage (see dvc.yaml), each run as ``python -m stages.<name>``.

Every stage's ``main`` begins with one call, ``args, params = common.start(<name>, cli)``:
it parses the command line, reads the params file once and hands both to the stage; in the
stage's own process it first pins the numerics (gan/numerics.py): the thread and kernel
variables of the environment, torch's switches, the self-check against the committed
digests.

The variables must be in the environment before torch loads (OpenMP and MKL read theirs as
their libraries start, NumPy's BLAS too), so a stage module imports at its top only what
loads neither: the standard library, ``stages.common``, ``gan.errors`` and the params
sections (``gan.sections``, PyYAML). Everything else it imports inside ``main``, after
``start``, and in the functions ``main`` calls. ``tests/test_numerics.py`` holds both rules.
"""
