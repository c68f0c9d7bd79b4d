from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnvironmentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVIRONMENT_KIND_UNSPECIFIED: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_NATIVE: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_DOCKER: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_NIX: _ClassVar[EnvironmentKind]
    ENVIRONMENT_KIND_AUTO: _ClassVar[EnvironmentKind]

class EnvironmentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENVIRONMENT_STATE_UNSPECIFIED: _ClassVar[EnvironmentState]
    ENVIRONMENT_STATE_CREATED: _ClassVar[EnvironmentState]
    ENVIRONMENT_STATE_INITIALIZING: _ClassVar[EnvironmentState]
    ENVIRONMENT_STATE_READY: _ClassVar[EnvironmentState]
    ENVIRONMENT_STATE_STOPPED: _ClassVar[EnvironmentState]
    ENVIRONMENT_STATE_FAILED: _ClassVar[EnvironmentState]
ENVIRONMENT_KIND_UNSPECIFIED: EnvironmentKind
ENVIRONMENT_KIND_NATIVE: EnvironmentKind
ENVIRONMENT_KIND_DOCKER: EnvironmentKind
ENVIRONMENT_KIND_NIX: EnvironmentKind
ENVIRONMENT_KIND_AUTO: EnvironmentKind
ENVIRONMENT_STATE_UNSPECIFIED: EnvironmentState
ENVIRONMENT_STATE_CREATED: EnvironmentState
ENVIRONMENT_STATE_INITIALIZING: EnvironmentState
ENVIRONMENT_STATE_READY: EnvironmentState
ENVIRONMENT_STATE_STOPPED: EnvironmentState
ENVIRONMENT_STATE_FAILED: EnvironmentState

class Mount(_message.Message):
    __slots__ = ("host_path", "container_path", "read_only")
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PATH_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    host_path: str
    container_path: str
    read_only: bool
    def __init__(self, host_path: _Optional[str] = ..., container_path: _Optional[str] = ..., read_only: _Optional[bool] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("host_ip", "host_port", "container_port", "protocol")
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    host_ip: str
    host_port: int
    container_port: int
    protocol: str
    def __init__(self, host_ip: _Optional[str] = ..., host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ...) -> None: ...

class DockerSettings(_message.Message):
    __slots__ = ("image", "image_tarball", "mounts", "ports", "env", "workdir", "user")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_TARBALL_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    image: str
    image_tarball: str
    mounts: _containers.RepeatedCompositeFieldContainer[Mount]
    ports: _containers.RepeatedCompositeFieldContainer[PortMapping]
    env: _containers.ScalarMap[str, str]
    workdir: str
    user: str
    def __init__(self, image: _Optional[str] = ..., image_tarball: _Optional[str] = ..., mounts: _Optional[_Iterable[_Union[Mount, _Mapping]]] = ..., ports: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., env: _Optional[_Mapping[str, str]] = ..., workdir: _Optional[str] = ..., user: _Optional[str] = ...) -> None: ...

class NixSettings(_message.Message):
    __slots__ = ("flake_dir", "dev_shell")
    FLAKE_DIR_FIELD_NUMBER: _ClassVar[int]
    DEV_SHELL_FIELD_NUMBER: _ClassVar[int]
    flake_dir: str
    dev_shell: str
    def __init__(self, flake_dir: _Optional[str] = ..., dev_shell: _Optional[str] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("id", "name", "kind", "resolved_kind", "kind_reason", "state", "error", "docker", "nix", "container_id", "running_processes", "created_at_unix_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_KIND_FIELD_NUMBER: _ClassVar[int]
    KIND_REASON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    NIX_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    kind: EnvironmentKind
    resolved_kind: EnvironmentKind
    kind_reason: str
    state: EnvironmentState
    error: str
    docker: DockerSettings
    nix: NixSettings
    container_id: str
    running_processes: int
    created_at_unix_ms: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., kind: _Optional[_Union[EnvironmentKind, str]] = ..., resolved_kind: _Optional[_Union[EnvironmentKind, str]] = ..., kind_reason: _Optional[str] = ..., state: _Optional[_Union[EnvironmentState, str]] = ..., error: _Optional[str] = ..., docker: _Optional[_Union[DockerSettings, _Mapping]] = ..., nix: _Optional[_Union[NixSettings, _Mapping]] = ..., container_id: _Optional[str] = ..., running_processes: _Optional[int] = ..., created_at_unix_ms: _Optional[int] = ...) -> None: ...

class CreateEnvironmentRequest(_message.Message):
    __slots__ = ("name", "kind", "docker", "nix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    NIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: EnvironmentKind
    docker: DockerSettings
    nix: NixSettings
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[EnvironmentKind, str]] = ..., docker: _Optional[_Union[DockerSettings, _Mapping]] = ..., nix: _Optional[_Union[NixSettings, _Mapping]] = ...) -> None: ...

class CreateEnvironmentResponse(_message.Message):
    __slots__ = ("environment",)
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    environment: Environment
    def __init__(self, environment: _Optional[_Union[Environment, _Mapping]] = ...) -> None: ...

class InitEnvironmentRequest(_message.Message):
    __slots__ = ("environment_id",)
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    environment_id: str
    def __init__(self, environment_id: _Optional[str] = ...) -> None: ...

class InitEnvironmentResponse(_message.Message):
    __slots__ = ("phase", "done", "total", "unit", "message", "environment")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    phase: str
    done: int
    total: int
    unit: str
    message: str
    environment: Environment
    def __init__(self, phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., message: _Optional[str] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ...) -> None: ...

class StopEnvironmentRequest(_message.Message):
    __slots__ = ("environment_id", "grace_ms")
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    environment_id: str
    grace_ms: int
    def __init__(self, environment_id: _Optional[str] = ..., grace_ms: _Optional[int] = ...) -> None: ...

class StopEnvironmentResponse(_message.Message):
    __slots__ = ("environment", "stopped_processes")
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STOPPED_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    environment: Environment
    stopped_processes: int
    def __init__(self, environment: _Optional[_Union[Environment, _Mapping]] = ..., stopped_processes: _Optional[int] = ...) -> None: ...

class ShutdownEnvironmentRequest(_message.Message):
    __slots__ = ("environment_id", "grace_ms")
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    environment_id: str
    grace_ms: int
    def __init__(self, environment_id: _Optional[str] = ..., grace_ms: _Optional[int] = ...) -> None: ...

class ShutdownEnvironmentResponse(_message.Message):
    __slots__ = ("stopped_processes", "container_removed")
    STOPPED_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_REMOVED_FIELD_NUMBER: _ClassVar[int]
    stopped_processes: int
    container_removed: bool
    def __init__(self, stopped_processes: _Optional[int] = ..., container_removed: _Optional[bool] = ...) -> None: ...

class ListEnvironmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListEnvironmentsResponse(_message.Message):
    __slots__ = ("environments",)
    ENVIRONMENTS_FIELD_NUMBER: _ClassVar[int]
    environments: _containers.RepeatedCompositeFieldContainer[Environment]
    def __init__(self, environments: _Optional[_Iterable[_Union[Environment, _Mapping]]] = ...) -> None: ...

class GetEnvironmentRequest(_message.Message):
    __slots__ = ("environment_id",)
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    environment_id: str
    def __init__(self, environment_id: _Optional[str] = ...) -> None: ...

class GetEnvironmentResponse(_message.Message):
    __slots__ = ("environment",)
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    environment: Environment
    def __init__(self, environment: _Optional[_Union[Environment, _Mapping]] = ...) -> None: ...

class CapabilitiesRequest(_message.Message):
    __slots__ = ("refresh",)
    REFRESH_FIELD_NUMBER: _ClassVar[int]
    refresh: bool
    def __init__(self, refresh: _Optional[bool] = ...) -> None: ...

class DockerCapability(_message.Message):
    __slots__ = ("available", "version", "api_version", "reason")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    available: bool
    version: str
    api_version: str
    reason: str
    def __init__(self, available: _Optional[bool] = ..., version: _Optional[str] = ..., api_version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class NixCapability(_message.Message):
    __slots__ = ("available", "version", "reason")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    available: bool
    version: str
    reason: str
    def __init__(self, available: _Optional[bool] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "found", "path", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    found: bool
    path: str
    version: str
    def __init__(self, name: _Optional[str] = ..., found: _Optional[bool] = ..., path: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("vendor", "name", "device")
    VENDOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    vendor: str
    name: str
    device: str
    def __init__(self, vendor: _Optional[str] = ..., name: _Optional[str] = ..., device: _Optional[str] = ...) -> None: ...

class CapabilitiesResponse(_message.Message):
    __slots__ = ("docker", "nix", "tools", "cpus", "memory_bytes", "os", "arch", "gpus", "probed_at_unix_ms")
    DOCKER_FIELD_NUMBER: _ClassVar[int]
    NIX_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    CPUS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    PROBED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    docker: DockerCapability
    nix: NixCapability
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    cpus: int
    memory_bytes: int
    os: str
    arch: str
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    probed_at_unix_ms: int
    def __init__(self, docker: _Optional[_Union[DockerCapability, _Mapping]] = ..., nix: _Optional[_Union[NixCapability, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., cpus: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., os: _Optional[str] = ..., arch: _Optional[str] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ..., probed_at_unix_ms: _Optional[int] = ...) -> None: ...

class ReapRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class ReapedContainer(_message.Message):
    __slots__ = ("id", "name", "owner", "environment_id", "removed", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    owner: str
    environment_id: str
    removed: bool
    error: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., owner: _Optional[str] = ..., environment_id: _Optional[str] = ..., removed: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ReapResponse(_message.Message):
    __slots__ = ("containers", "process_records")
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_RECORDS_FIELD_NUMBER: _ClassVar[int]
    containers: _containers.RepeatedCompositeFieldContainer[ReapedContainer]
    process_records: int
    def __init__(self, containers: _Optional[_Iterable[_Union[ReapedContainer, _Mapping]]] = ..., process_records: _Optional[int] = ...) -> None: ...

class FindFreePortRequest(_message.Message):
    __slots__ = ("address", "min_port", "max_port")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MIN_PORT_FIELD_NUMBER: _ClassVar[int]
    MAX_PORT_FIELD_NUMBER: _ClassVar[int]
    address: str
    min_port: int
    max_port: int
    def __init__(self, address: _Optional[str] = ..., min_port: _Optional[int] = ..., max_port: _Optional[int] = ...) -> None: ...

class FindFreePortResponse(_message.Message):
    __slots__ = ("port", "address", "held_until_unix_ms")
    PORT_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HELD_UNTIL_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    port: int
    address: str
    held_until_unix_ms: int
    def __init__(self, port: _Optional[int] = ..., address: _Optional[str] = ..., held_until_unix_ms: _Optional[int] = ...) -> None: ...
