"""Stand-in for the get-pip.py bootstrap script that ansible-test downloads.

ansible-test fetches get-pip from its own CI file host to put pip into the virtual
environments it creates for sanity tests. Where that host cannot be reached (proxies,
mirrors-only networks: https://github.com/ansible/ansible/issues/77304), tests/run.sh
places this file in ansible-test's cache instead. It does the same job with what Python
ships: ensurepip, then pip installs the requested pip release from the configured index.
"""

import ensurepip
import os
import subprocess
import sys

if __name__ == "__main__":
    ensurepip.bootstrap(upgrade=True)
    # ensurepip isolates itself from pip's configuration through the environment: undo that
    # so the user's index / certificate settings apply to the next step.
    os.environ.pop("PIP_CONFIG_FILE", None)
    os.environ.pop("ENSUREPIP_OPTIONS", None)
    args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install"] + args))
