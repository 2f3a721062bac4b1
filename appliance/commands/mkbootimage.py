"""si mkbootimage: build the autoinstall kernel and initrd (bootimages/)."""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

from bootimages.build import DEFAULT_TOOLS, TOOLS, BuildError, BuildOptions, build
from bootimages.debs import default_cache_dir

from ._common import CliError, config_path, load_config


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def register(sub) -> None:
    p = sub.add_parser("mkbootimage", help="build the autoinstall kernel and initrd from Debian packages")
    p.add_argument("--config", type=Path, default=None,
                   help="appliance config: output goes to <boot_root>/systemimager/ (default when it exists)")
    p.add_argument("--output", type=Path, help="directory for kernel and initrd.img (overrides the config)")
    p.add_argument("--kernel-version", help="Debian kernel ABI, e.g. 6.1.0-56-amd64 (default: current)")
    p.add_argument("--extra-modules", type=_csv, default=(), metavar="M1,M2",
                   help="more kernel modules to load at boot (dependencies are added)")
    p.add_argument("--with", dest="extra_tools", type=_csv, default=(), metavar="TOOLS",
                   help=f"optional tool sets: {', '.join(t for t in TOOLS if t not in DEFAULT_TOOLS)}")
    p.add_argument("--kernel", type=Path, help="a custom kernel image instead of Debian's ...")
    p.add_argument("--modules-dir", type=Path, help="... with its /lib/modules/<version> tree")
    p.add_argument("--compression", choices=("gzip", "xz"), default="gzip",
                   help="initrd compression (gzip unpacks fastest; xz is smaller)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help=f"downloaded packages and finished builds (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="rebuild even if an identical build is cached")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=mkbootimage)


def output_dir(args) -> Path:
    if args.output:
        return args.output
    if args.config or config_path(args).exists():
        return load_config(args).boot_root / "systemimager"
    raise CliError("give --output DIR, or --config with the appliance config (output: <boot_root>/systemimager)")


def mkbootimage(args) -> int:
    opts = BuildOptions(output=output_dir(args), kernel_version=args.kernel_version,
                        extra_modules=args.extra_modules, extra_tools=args.extra_tools,
                        kernel=args.kernel, modules_dir=args.modules_dir, compression=args.compression,
                        cache_dir=args.cache_dir or default_cache_dir(), use_cache=not args.no_cache)
    console = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def step(msg: str) -> None:
            console.log(msg)
            progress.update(task, description=msg, total=None, completed=0)

        def on_bytes(done: int, total: int) -> None:
            progress.update(task, total=total, completed=done)

        try:
            result = build(opts, step, on_bytes)
        except BuildError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    mib = 1024 * 1024
    console = Console()
    console.print(f"[bold]kernel[/]  {result.kernel}  (Linux {result.kernel_version})")
    console.print(f"[bold]initrd[/]  {result.initrd}  [bold]{result.initrd_size / mib:.1f} MiB[/] "
                  f"({result.uncompressed_size / mib:.1f} MiB unpacked, {result.files} entries)")
    console.print(f"modules: {len(result.modules)} files; built in: {', '.join(result.builtin) or 'none'}")
    console.print(f"libraries: {', '.join(result.libraries)}")
    console.print(f"{'reused the cached build' if result.cached else 'built'} in {result.seconds:.1f} s")
    return 0
