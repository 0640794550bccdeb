"""One node per data folder: a second holder is refused with one line naming the first; the lock
goes with its holder (released, or its process gone)."""

import os
import subprocess
import sys

import pytest

from node.datalock import DataDirBusy, DataDirLock


def test_second_lock_is_refused_and_names_the_holder(tmp_path):
    first = DataDirLock(tmp_path, "nae-1").acquire()
    with pytest.raises(DataDirBusy) as refused:
        DataDirLock(tmp_path, "nae-2").acquire()
    msg = str(refused.value)
    assert "in use by a running node" in msg and "pid=%d" % os.getpid() in msg and "nae-1" in msg
    assert "\n" not in msg
    first.release()
    with DataDirLock(tmp_path, "nae-2"):
        pass


def test_a_dead_holder_leaves_no_lock(tmp_path):
    code = "from node.datalock import DataDirLock; DataDirLock(%r, 'gone').acquire(); import os; os._exit(0)" % str(tmp_path)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with DataDirLock(tmp_path, "next"):
        pass
