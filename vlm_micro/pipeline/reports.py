"""Write the per-image reports of a shard in background processes while the shard labels.

A labelling job hands each finished image to :class:`ReportWriter`, which writes its
report and exports (see :func:`vlm_micro.reporting.write_image_report`) in worker
processes. Report writing (figures, PNG and PDF encoding) then overlaps with reading
and labelling the next images, and neither the job start nor the imports of the
reporting code are paid by a separate job.

The workers are started with the ``spawn`` method, so they never inherit the torch
threads of the labelling process and import the reporting code only, without torch.

NOTE: as with any use of ``spawn``, a Python script that calls
:func:`vlm_micro.pipeline.shard.process_shard` with report settings must keep its own
top-level code under ``if __name__ == "__main__":``, because the worker imports the
main script again. ``python -m vlm_micro`` and the ``vlm-micro`` command are safe.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from vlm_micro.errors import VlmMicroError

log = logging.getLogger(__name__)


def report_config(report: dict, settings: dict) -> dict:
    """Return the configuration that ``write_image_report`` reads for a shard.

    It takes the ``report`` section from the shard file and the ``labeling`` and ``read``
    sections (thresholds quoted in the report, how gallery tiles are read) from the
    shard's labelling settings.
    """
    return {"report": dict(report), "labeling": settings.get("labeling") or {}, "read": settings.get("read") or {}}


def _configure_worker_logging(level: int) -> None:
    """Send the worker's log records to stderr at the level of the parent's vlm_micro logger.

    The worker also ignores SIGINT. Ctrl-C reaches every process of the terminal's
    process group, and the labelling process, which stops the pool, is the one to
    handle it. A worker interrupted in the middle of a report only added a traceback
    and a broken pool to the job log.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("vlm_micro").setLevel(level)


def _import_reporting() -> None:
    """Import the reporting code and the image readers, so the first report does not wait for them.

    The imported modules then move to the garbage collector's permanent generation
    (``gc.freeze``): the collections during the reports and the worker's shutdown
    no longer walk them.
    """
    import vlm_micro.io  # noqa: F401 - gallery tiles are read through it
    import vlm_micro.reporting.image_report  # noqa: F401

    gc.freeze()


def _write_report(out: str, image_id: str, config: dict) -> float:
    """Write the report and exports of one image and return the seconds it took."""
    from vlm_micro.reporting import write_image_report

    start = time.perf_counter()
    write_image_report(out, image_id, config)
    return time.perf_counter() - start


# Maximum number of report processes of one labelling job. Each needs memory for the reporting code
# and matplotlib: a peak of 270 MB after the reports of six 512 px images.
MAX_REPORT_WORKERS = 4


def report_workers(cores: int | None) -> int:
    """Return the report processes of a labelling job with ``cores`` CPU cores.

    One per core, at most :data:`MAX_REPORT_WORKERS`. While the job labels they share
    the cores with torch. With the demo model a report of a 512 px image takes longer
    than labelling it (0.29 s against 0.17 s on 2 idle cores). With one process, a job
    of 50 such images waited 6 s for its last reports. With two, the run took 22.3 s
    instead of 24.2 s.
    """
    return max(1, min(cores or 1, MAX_REPORT_WORKERS))


@dataclass
class ReportWriter:
    """Write per-image reports in background processes, started in the order the images are submitted.

    Use it as a context manager. :meth:`wait` returns once every submitted report is
    written and raises when any of them failed. Leaving the ``with`` block without
    :meth:`wait` (because labelling raised) cancels the reports that have not started.
    """

    out: Path
    config: dict
    workers: int = 1  # report processes
    report_s: float = 0.0  # seconds the workers spent writing reports, summed
    wait_s: float = 0.0  # seconds :meth:`wait` waited for reports after the last image was submitted
    n_written: int = 0
    _futures: dict[str, Future] = field(default_factory=dict, repr=False)
    _pool: ProcessPoolExecutor | None = field(default=None, repr=False)

    def __enter__(self) -> "ReportWriter":
        level = logging.getLogger("vlm_micro").getEffectiveLevel()
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_configure_worker_logging,
            initargs=(level,),
        )
        # Start the workers now, so that their imports overlap with loading the model.
        for _ in range(self.workers):
            self._pool.submit(_import_reporting)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)

    def submit(self, image_id: str) -> None:
        """Queue the report of an image whose status file and tables are written."""
        self._futures[image_id] = self._pool.submit(_write_report, str(self.out), image_id, self.config)

    def wait(self) -> None:
        """Wait for every queued report.

        Raises
        ------
        VlmMicroError
            When a report could not be written, naming the first such image and its
            error. The other reports are written all the same.
        """
        failures = []
        start = time.perf_counter()
        for image_id, future in self._futures.items():
            try:
                self.report_s += future.result()
                self.n_written += 1
            except Exception as exc:  # noqa: BLE001 - any failure of the worker is reported per image
                # The traceback includes the one from the worker process, as the exception's cause.
                log.error("report of image %s failed: %s: %s", image_id, type(exc).__name__, exc, exc_info=exc)
                failures.append((image_id, exc))
        self._futures.clear()
        self.wait_s += time.perf_counter() - start
        if failures:
            image_id, exc = failures[0]
            raise VlmMicroError(
                f"the reports of {len(failures)} image(s) could not be written, first {image_id!r}: {exc}; "
                "the labels are kept, so rerunning the workflow rewrites only the reports"
            ) from exc
