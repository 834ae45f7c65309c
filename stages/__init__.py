"""One thin script per DVC stage (see dvc.yaml), each run as python -m stages.<name>.

Running one imports this package first, before any stage module loads torch: here the
numerics section of the stage's params file pins the process's threads and kernels
(gan/numerics.py), so that the pins win over the user's environment and are in place when
OpenMP and MKL start. Importing the package any other way (the tests, a notebook) pins
nothing: only ``python -m stages.<name>`` runs with sys.argv[0] == "-m" while it imports.
"""

import sys

if sys.argv[:1] == ["-m"]:
    from gan.numerics import pin_from_argv

    pin_from_argv(sys.argv[1:])
