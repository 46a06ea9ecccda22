import pytest

from netns_vault.rollback import Rollback


def test_undoes_in_reverse_on_failure_and_only_once():
    log = []
    with pytest.raises(RuntimeError), Rollback() as rb:
        rb.step("a", lambda: log.append("do a"), lambda: log.append("undo a"))
        rb.step("b", lambda: log.append("do b"), lambda: log.append("undo b"))
        raise RuntimeError("boom")
    assert log == ["do a", "do b", "undo b", "undo a"]
    assert rb.undo_all() == [] and log[-1] == "undo a"  # nothing runs twice


def test_a_failed_do_registers_no_undo():
    log = []

    def fail():
        raise OSError("nope")

    with pytest.raises(OSError), Rollback() as rb:
        rb.step("a", lambda: log.append("do a"), lambda: log.append("undo a"))
        rb.step("b", fail, lambda: log.append("undo b"))
    assert log == ["do a", "undo a"]


def test_commit_keeps_everything():
    log = []
    with Rollback() as rb:
        rb.step("a", lambda: None, lambda: log.append("undo a"))
        rb.commit()
    assert log == []


def test_a_failing_undo_does_not_stop_the_others():
    log = []

    def bad_undo():
        raise ValueError("undo broke")

    with pytest.raises(KeyboardInterrupt), Rollback() as rb:
        rb.push("a", lambda: log.append("undo a"))
        rb.push("b", bad_undo)
        rb.push("c", lambda: log.append("undo c"))
        raise KeyboardInterrupt
    assert log == ["undo c", "undo a"]
    assert rb.errors == ["undoing b: undo broke"]


def test_step_returns_what_do_returned():
    rb = Rollback()
    assert rb.step("x", lambda: 42, lambda: None) == 42
    assert rb.pending == ["x"]


def test_guarded_runs_its_undo_when_the_action_is_interrupted_half_way():
    log = []

    def half_done():
        log.append("half of do")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), Rollback() as rb:
        rb.guarded("a", half_done, lambda: log.append("undo a"))
    assert log == ["half of do", "undo a"]


def test_a_second_ctrl_c_while_undoing_does_not_stop_the_undo():
    import os
    import signal

    log = []

    def undo_interrupted():
        os.kill(os.getpid(), signal.SIGINT)
        log.append("undo b finished")

    with pytest.raises(RuntimeError), Rollback() as rb:
        rb.push("a", lambda: log.append("undo a"))
        rb.push("b", undo_interrupted)
        raise RuntimeError("boom")
    assert log == ["undo b finished", "undo a"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _slow_answer() -> str:
    import time

    time.sleep(0.3)
    return "x" * 1000


def test_a_forked_helper_whose_parent_stopped_listening_never_unwinds_into_the_parent(tmp_path):
    """An interrupted parent closes the pipe; the helper's write then fails (EPIPE). It must end
    there, not return into the caller's code as a second copy of it (seen: a demo torn down twice)."""
    import os

    from netns_vault import nsexec

    marker = tmp_path / "unwound"
    me = os.getpid()
    try:
        pending = nsexec.start_in_child(lambda: None, "test helper", _slow_answer)
    finally:
        if os.getpid() != me:  # only a helper that unwound (returned or raised) gets here
            marker.write_text("the helper unwound into the caller")
            os._exit(0)
    os.close(pending.fd)  # the parent stops listening at once
    _, status = os.waitpid(pending.pid, 0)
    assert not marker.exists()
    assert os.WIFEXITED(status)
