"""`simreal` command line: run, pretrain, finetune, distill, evaluate, diagnose, calibrate, robustness,
panel, report, envs, sweep, compare, export, config-reference.

Every config problem is reported as one line naming the key path, before any training starts.
"""

from __future__ import annotations

import logging
import os
import sys

from simreal.cli.experiments import (
    cmd_compare,
    cmd_distill,
    cmd_finetune,
    cmd_panel,
    cmd_pretrain,
    cmd_report,
    cmd_run,
    cmd_sweep,
)
from simreal.cli.parser import _parser
from simreal.cli.policies import (
    cmd_calibrate,
    cmd_config_reference,
    cmd_diagnose,
    cmd_envs,
    cmd_evaluate,
    cmd_export,
    cmd_robustness,
)
from simreal.schema import ConfigError
from simreal.training.engine.artifacts import ArtifactError

log = logging.getLogger("simreal")

COMMANDS = {
    "run": cmd_run,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "distill": cmd_distill,
    "evaluate": cmd_evaluate,
    "report": cmd_report,
    "robustness": cmd_robustness,
    "panel": cmd_panel,
    "diagnose": cmd_diagnose,
    "calibrate": cmd_calibrate,
    "envs": cmd_envs,
    "sweep": cmd_sweep,
    "compare": cmd_compare,
    "export": cmd_export,
    "config-reference": cmd_config_reference,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if os.getcwd() not in sys.path:  # a user's package beside the experiment imports as with `python -m`
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    log.setLevel(logging.INFO)
    try:
        COMMANDS[args.command](args)
    except (
        ConfigError,
        ArtifactError,
        FileExistsError,
        PermissionError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"simreal: error: {err}", file=sys.stderr)
        return 2
    return 0
