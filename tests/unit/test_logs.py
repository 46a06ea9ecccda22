"""netns_vault.logs, the lazy logging facade: `logging` costs nothing until something imports it.

pytest itself imports logging, so whatever depends on `logging` being absent runs in a fresh
interpreter (`run`)."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
import textwrap

import pytest

from netns_vault import logs
from netns_vault.logs import DEBUG, INFO, WARNING, get_logger


def run(code: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def test_a_fresh_interpreter_has_no_logging():
    """What the tests below rely on: nothing imports logging before netns_vault.logs does."""
    out = run("import sys, netns_vault.logs; print('logging' in sys.modules)")
    assert out.stdout == "False\n"


def test_debug_and_info_are_dropped_and_never_import_logging():
    out = run("""
        import sys
        from netns_vault.logs import DEBUG, INFO, get_logger
        log = get_logger("nvt13.quiet")
        log.debug("debug %s", 1)
        log.info("info %s", 2)
        print(log.isEnabledFor(DEBUG), log.isEnabledFor(INFO), "logging" in sys.modules)
    """)
    assert out.stdout == "False False False\n"
    assert out.stderr == ""


def test_warning_and_error_reach_logging_s_last_resort_handler():
    out = run("""
        import sys
        from netns_vault.logs import get_logger
        log = get_logger("nvt13.loud")
        log.warning("careful %s", "now")
        log.error("broken %d", 3)
        print("logging" in sys.modules)
    """)
    assert out.stderr == "careful now\nbroken 3\n"  # logging.lastResort: the message alone
    assert out.stdout == "True\n"


def test_debug_reaches_logging_once_something_imported_it_later():
    out = run("""
        from netns_vault.logs import get_logger
        log = get_logger("nvt13.late")
        log.debug("before")
        import logging
        logging.basicConfig(level=logging.DEBUG,
                            format="%(levelname)s %(name)s %(filename)s:%(lineno)d %(message)s")
        log.debug("after %s", "import")
        log.info("and info")
    """)
    assert out.stderr == ("DEBUG nvt13.late <string>:8 after import\n"
                          "INFO nvt13.late <string>:9 and info\n")


def test_configure_verbose_prints_debug_records_in_the_cli_format():
    out = run("""
        import sys
        from netns_vault import logs
        logs.configure(True)
        print("logging" in sys.modules)
        log = logs.get_logger("nvt13.verbose")
        log.debug("hello %d", 5)
        log.info("info")
        log.warning("warn")
    """)
    assert out.stdout == "True\n"
    assert out.stderr == ("DEBUG nvt13.verbose: hello 5\nINFO nvt13.verbose: info\n"
                          "WARNING nvt13.verbose: warn\n")


def test_configure_quiet_imports_nothing_then_prints_warnings_in_the_cli_format():
    out = run("""
        import sys
        from netns_vault import logs
        logs.configure(False)
        log = logs.get_logger("nvt13.calm")
        log.debug("dropped")
        log.info("dropped")
        print("logging" in sys.modules)
        log.warning("careful %s", "now")
        log.debug("still dropped")
        log.info("still dropped")
        print("logging" in sys.modules)
    """)
    assert out.stdout == "False\nTrue\n"
    assert out.stderr == "WARNING nvt13.calm: careful now\n"


@pytest.fixture
def captured():
    """Records that reach the real logger "nvt13.logs.caller" (logging is imported here)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    real = logging.getLogger("nvt13.logs.caller")
    handler = Keep()
    saved = real.level, real.propagate
    real.addHandler(handler)
    real.setLevel(logging.DEBUG)
    real.propagate = False
    try:
        yield records
    finally:
        real.removeHandler(handler)
        real.setLevel(saved[0])
        real.propagate = saved[1]


def test_each_record_names_the_caller_not_the_facade(captured):
    log = get_logger("nvt13.logs.caller")
    first = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    log.debug("d %s", 1)
    log.info("i %s", 2)
    log.warning("w %s", 3)
    log.error("e %s", 4)
    assert [(r.levelname, r.getMessage()) for r in captured] == [
        ("DEBUG", "d 1"), ("INFO", "i 2"), ("WARNING", "w 3"), ("ERROR", "e 4")]
    assert [(r.pathname, r.lineno, r.funcName) for r in captured] == [
        (__file__, first + n, "test_each_record_names_the_caller_not_the_facade")
        for n in range(4)]
    assert {r.name for r in captured} == {"nvt13.logs.caller"}


def test_a_callers_own_stacklevel_is_kept(captured):
    log = get_logger("nvt13.logs.caller")

    def helper() -> None:
        log.debug("from the helper's caller", stacklevel=3)

    line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
    helper()
    [record] = captured
    assert (record.lineno, record.funcName) == (line, "test_a_callers_own_stacklevel_is_kept")


def test_is_enabled_for_follows_the_real_logger_once_logging_is_imported(captured):
    log = get_logger("nvt13.logs.caller")
    assert log.isEnabledFor(DEBUG) and log.isEnabledFor(INFO)
    logging.getLogger("nvt13.logs.caller").setLevel(logging.WARNING)
    assert not log.isEnabledFor(DEBUG) and not log.isEnabledFor(INFO)
    assert log.isEnabledFor(WARNING)
    log.debug("dropped")
    log.info("dropped")
    assert captured == []


def test_the_levels_are_logging_s():
    assert (logs.DEBUG, logs.INFO, logs.WARNING) == (logging.DEBUG, logging.INFO,
                                                     logging.WARNING)
