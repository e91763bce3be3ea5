# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuserve.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a systemd unit's state and journal, and find why a vLLM engine died.

The helpers take a ``run_command`` callable with AnsibleModule.run_command's
signature (``run_command(args_list) -> (rc, stdout, stderr)``) so that they can be
used from any module and tested without systemd.
"""

from __future__ import annotations

import re
import typing as t

RunCommand = t.Callable[..., t.Tuple[int, str, str]]

#: Properties read by unit_state(), in the order they are requested.
SHOW_PROPERTIES = ('ActiveState', 'SubState', 'NRestarts', 'ExecMainStatus', 'ExecMainPID', 'MainPID')
_INT_PROPERTIES = frozenset(('NRestarts', 'ExecMainStatus', 'ExecMainPID', 'MainPID'))

#: Line vLLM's API server logs after its engine core process failed to start.
ENGINE_FAILED_MARKER = 'Engine core initialization failed'
TRACEBACK_HEADER = 'Traceback (most recent call last)'

# "(EngineCore_DP0 pid=123) ", "(APIServer pid=1) " and "ERROR 05-01 10:00:00 [core.py:700] "
_LINE_PREFIX = re.compile(r'^(?:\([^)]*pid=\d+\)\s?)?(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\S+\s+\S+\s+\[[^\]]*\]\s?)?')


class SystemdUnitError(Exception):
    """systemctl or journalctl failed."""


def _to_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def unit_state(run_command: RunCommand, unit: str, systemctl: str = 'systemctl') -> dict[str, t.Any]:
    """Return the unit's state from ``systemctl show``.

    Keys are SHOW_PROPERTIES; NRestarts, ExecMainStatus, ExecMainPID and MainPID are
    ints (None when systemd does not know the property, e.g. NRestarts before
    systemd 235), the others strings. A unit that does not exist reads as
    ``ActiveState=inactive``.
    """
    cmd = [systemctl, 'show', unit]
    for prop in SHOW_PROPERTIES:
        cmd.extend(['-p', prop])
    cmd.append('--no-pager')
    rc, out, err = run_command(cmd)
    if rc != 0:
        raise SystemdUnitError('%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
    state: dict[str, t.Any] = dict((prop, None) for prop in SHOW_PROPERTIES)
    for line in out.splitlines():
        key, sep, value = line.partition('=')
        if not sep or key not in state:
            continue
        value = value.strip()
        state[key] = _to_int(value) if key in _INT_PROPERTIES else value
    return state


def journal_tail(
    run_command: RunCommand,
    unit: str,
    lines: int,
    since_ts: float | None = None,
    journalctl: str = 'journalctl',
) -> list[str]:
    """The last ``lines`` journal lines of ``unit`` (messages only, ``-o cat``).

    ``since_ts`` (epoch seconds) limits the output to entries logged from then on.
    """
    cmd = [journalctl, '-u', unit, '-n', str(int(lines)), '--no-pager', '-o', 'cat']
    if since_ts is not None:
        cmd.extend(['--since', '@%d' % int(since_ts)])
    rc, out, err = run_command(cmd)
    if rc != 0:
        raise SystemdUnitError('%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
    return [line for line in out.splitlines() if line.strip() and line.strip() != '-- No entries --']


def _strip_prefix(line: str) -> str:
    return _LINE_PREFIX.sub('', line, count=1)


def _traceback_block(lines: list[str], start: int, context: int) -> list[str]:
    """The traceback that starts at ``lines[start]``: header, frames, exception line."""
    end = len(lines) - 1
    for idx in range(start + 1, len(lines)):
        body = _strip_prefix(lines[idx])
        if body and not body[0].isspace():
            end = idx  # first unindented line after the frames: the exception
            break
    block = lines[start:end + 1]
    if len(block) > context:
        block = [block[0]] + block[-(context - 1):]
    return block


def find_root_cause(lines: list[str], context: int = 15) -> list[str]:
    """Pick the lines of a journal that explain why the engine died.

    * When a line contains "Engine core initialization failed": that line ends the
      API server's own traceback, and the real error (the engine core's exception)
      sits just above that traceback. Return up to ``context`` lines above the
      traceback's header, then the marker line. When the header is not in ``lines``,
      return the ``context`` lines above the marker and the marker.
    * Else, when there is a Python traceback: the first one, from its header to its
      exception line (header and last lines when longer than ``context``).
    * Else: the last ``context`` lines.
    """
    marker = next((i for i, line in enumerate(lines) if ENGINE_FAILED_MARKER in line), None)
    if marker is not None:
        header = next((i for i in range(marker - 1, -1, -1) if TRACEBACK_HEADER in lines[i]), None)
        if header:  # None, or 0: nothing above the header to show
            return lines[max(0, header - context):header] + [lines[marker]]
        return lines[max(0, marker - context):marker + 1]
    first_tb = next((i for i, line in enumerate(lines) if TRACEBACK_HEADER in line), None)
    if first_tb is not None:
        return _traceback_block(lines, first_tb, context)
    return lines[-context:] if context > 0 else []
