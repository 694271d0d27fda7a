"""Node configuration: ``config.toml`` in the home, then ``DMS_<SECTION>_<KEY>`` overrides.

Unknown keys and wrong types are errors that name the key (``api.port``), the value and what is
accepted. Environment values are strings; lists are comma-separated
(``DMS_NETWORK_BOOTSTRAP=/ip4/127.0.0.1/tcp/9000/p2p/Qm...,...``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from dms.errors import ConfigError, DMSError
from dms.types.units import parse_duration, parse_size

ENV_PREFIX = "DMS_"
RESERVED_ENV = frozenset({"DMS_HOME", "DMS_PASSPHRASE", "DMS_API_TOKEN", "DMS_API_URL"})
"""``DMS_*`` variables that are not config overrides."""

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class NetworkConfig(_Section):
    listen: list[str] = msgspec.field(default_factory=lambda: ["/ip4/0.0.0.0/tcp/9000"])
    bootstrap: list[str] = msgspec.field(default_factory=list)
    mdns: bool = False
    max_frame: str = "4MiB"

    def __post_init__(self) -> None:
        _check_unit("network.max_frame", self.max_frame, parse_size)


class APIConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Port = 9999


class ResourcesConfig(_Section):
    port_range_start: Port = 16384
    port_range_end: Port = 65535
    reclaim_interval: str = "5s"
    require_idle_cpu: bool = True
    """Onboarding offers only cores idle at that moment; false skips that check (the nodes of
    a devstack share one machine, and its load says nothing about what each may offer)."""

    def __post_init__(self) -> None:
        if self.port_range_start > self.port_range_end:
            raise ConfigError(
                "resources.port_range_start",
                f"{self.port_range_start} is above port_range_end {self.port_range_end}",
            )
        _check_unit("resources.reclaim_interval", self.reclaim_interval, parse_duration)


class ActorConfig(_Section):
    default_expiry: str = "30s"
    invoke_timeout: str = "30s"

    def __post_init__(self) -> None:
        _check_unit("actor.default_expiry", self.default_expiry, parse_duration)
        _check_unit("actor.invoke_timeout", self.invoke_timeout, parse_duration)


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    log: LogConfig = msgspec.field(default_factory=LogConfig)
    network: NetworkConfig = msgspec.field(default_factory=NetworkConfig)
    api: APIConfig = msgspec.field(default_factory=APIConfig)
    resources: ResourcesConfig = msgspec.field(default_factory=ResourcesConfig)
    actor: ActorConfig = msgspec.field(default_factory=ActorConfig)


def _check_unit(key: str, value: str, parse: Any) -> None:
    try:
        parse(value, key)
    except DMSError as exc:
        raise ConfigError(key, str(exc).removeprefix(f"{key}: ")) from None


def sections() -> dict[str, type[_Section]]:
    return {f.name: f.type for f in msgspec.structs.fields(Config)}


def all_keys() -> list[str]:
    """Every valid ``section.key``."""
    return [
        f"{name}.{f.name}"
        for name, section in sections().items()
        for f in msgspec.structs.fields(section)
    ]


_PATH = re.compile(r"at `\$\.([^`]*)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def _translate(exc: msgspec.ValidationError, source: str) -> ConfigError:
    message = str(exc)
    path = _PATH.search(message)
    key = path.group(1).replace("[", ".").replace("]", "") if path else ""
    unknown = _UNKNOWN.search(message)
    if unknown:
        key = f"{key}.{unknown.group(1)}" if key else unknown.group(1)
        return ConfigError(key, f"unknown key in {source}; valid keys: {', '.join(all_keys())}")
    return ConfigError(key, f"{message.split(' - at ')[0]}{_accepted(key)} (in {source})")


def _accepted(key: str) -> str:
    """', accepted: a, b' for keys whose type is a Literal."""
    section, _, name = key.partition(".")
    struct = sections().get(section)
    field = (
        next((f for f in msgspec.structs.fields(struct) if f.name == name), None)
        if struct
        else None
    )
    if field is not None and getattr(field.type, "__origin__", None) is Literal:
        return "; accepted: " + ", ".join(map(str, get_args(field.type)))
    return ""


def _parse_env_value(key: str, raw: str, annotation: Any) -> Any:
    origin = getattr(annotation, "__origin__", None)
    value: Any = raw
    if origin is list:
        value = [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return msgspec.convert(value, annotation, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(key, f"{raw!r} from the environment: {exc}") from None


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Turn ``DMS_SECTION_KEY=value`` variables into a nested mapping, validated by key."""
    known = sections()
    result: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section_name, _, key = rest.partition("_")
        section = known.get(section_name)
        fields = {f.name: f for f in msgspec.structs.fields(section)} if section else {}
        if key not in fields:
            raise ConfigError(
                f"{section_name}.{key}" if key else section_name,
                f"unknown key from environment variable {name}; valid keys: {', '.join(all_keys())}",
            )
        result.setdefault(section_name, {})[key] = _parse_env_value(
            f"{section_name}.{key}", raw, fields[key].type
        )
    return result


def read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError("", f"cannot read {path}: {exc.strerror}") from None


def build(data: Mapping[str, Any], source: str) -> Config:
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise _translate(exc, source) from None


def load(config_file: Path, env: Mapping[str, str] | None = None) -> Config:
    """The file's settings with the environment's overrides on top."""
    env = os.environ if env is None else env
    data = read_file(config_file)
    build(data, str(config_file))  # report file errors against the file
    for section, values in env_overrides(env).items():
        merged = dict(data.get(section, {}))
        merged.update(values)
        data[section] = merged
    return build(data, f"{config_file} with DMS_* overrides")


def get_value(config: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    if key not in all_keys():
        raise ConfigError(key, f"unknown key; valid keys: {', '.join(all_keys())}")
    return msgspec.to_builtins(getattr(getattr(config, section), name))


def set_value(config_file: Path, key: str, raw: str) -> Config:
    """Set ``section.key`` in the file (typed by the schema), validate, and write it back."""
    if key not in all_keys():
        raise ConfigError(key, f"unknown key; valid keys: {', '.join(all_keys())}")
    section, _, name = key.partition(".")
    field = next(f for f in msgspec.structs.fields(sections()[section]) if f.name == name)
    data = read_file(config_file)
    data.setdefault(section, {})[name] = msgspec.to_builtins(_parse_env_value(key, raw, field.type))
    config = build(data, str(config_file))
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(dump(data))
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError("", f"cannot write {value!r} to TOML")


def dump(data: Mapping[str, Any]) -> str:
    """TOML for our two-level config (sections of scalars and lists of scalars)."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
