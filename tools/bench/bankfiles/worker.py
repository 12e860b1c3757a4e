"""Peak RSS of the file-intake worker process on a generated bank file (docs/bankfiles.md).

Starts an emulator, bootstraps a fresh prefix, uploads a generated camt.054 file
of N transactions, then runs *only* the partner-files worker (the one the
enrichment service runs) in a child process until the file is done, and prints
that process's peak RSS (``VmHWM``) and the time taken. The job table fills at
the emulator's write rate (about 200/s here), so 100,000 takes minutes.

``python -m tools.bench.bankfiles.worker 100000``
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid

from shared.aws.clients import AwsClients
from shared.aws.emulator import wait_until_up
from shared.files.drop import ObjectRef
from shared.files.progress import FileProgress
from shared.settings import Settings
from tools.bench.bankfiles.gen import chunks
from tools.stack import bootstrap_stack, file_drops

KEY = "FIRSTBANK/bench.xml"


async def _worker() -> None:
    """Child: the file intake alone, until the parent kills it."""
    from services.enrichment.kind import ENRICHMENT
    from services.enrichment.service import file_intake
    from shared.pipeline.assemble import job_store

    settings = Settings()
    async with AwsClients(settings) as clients:
        worker = await file_intake(settings, clients, job_store(settings, clients, ENRICHMENT))
        await worker.run()


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _main(count: int, port: int) -> None:
    settings = Settings(prefix="bench" + uuid.uuid4().hex[:6], receive_wait_s=1)
    os.environ["REMITFLOW_PREFIX"] = settings.prefix
    async with AwsClients(settings) as clients:
        await bootstrap_stack(settings, clients)
        bucket = file_drops(settings)[0].bucket_name(settings.prefix)
        with tempfile.TemporaryFile() as file:
            for piece in chunks(count):
                file.write(piece)
            size = file.tell()
            file.seek(0)
            head = await clients.s3.put_object(Bucket=bucket, Key=KEY, Body=file.read())
        ref = ObjectRef(bucket, KEY, head["ETag"].strip('"'), size)
        progress = FileProgress.for_prefix(clients.dynamodb, settings.prefix)
        started = time.monotonic()
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tools.bench.bankfiles.worker", "--worker",
            env=dict(os.environ), stdout=subprocess.DEVNULL)
        peak = 0.0
        try:
            while (await progress.get(ref)).state != "done":
                if child.returncode is not None:
                    raise SystemExit(f"worker exited with {child.returncode}")
                peak = max(peak, _peak_rss_mb(child.pid))
                await asyncio.sleep(1)
            peak = max(peak, _peak_rss_mb(child.pid))
        finally:
            child.kill()
            await child.wait()
        print(f"transactions={count} file_mb={size / 1e6:.1f} "
              f"seconds={time.monotonic() - started:.0f} worker_peak_rss_mb={peak:.1f}")


def main() -> None:
    if sys.argv[1:] == ["--worker"]:
        asyncio.run(_worker())
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    port = 4700 + os.getpid() % 200
    env = {**os.environ, "MOTO_PORT": str(port)}
    emulator = subprocess.Popen([sys.executable, "-m", "tools.cli", "emulator", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    try:
        wait_until_up("127.0.0.1", port, timeout_s=30)
        os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                           "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "REMITFLOW_LOG_LEVEL": "WARNING"})
        asyncio.run(_main(count, port))
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    main()
