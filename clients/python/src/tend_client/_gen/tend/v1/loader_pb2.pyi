from tend_client._gen.tend.v1 import agent_pb2 as _agent_pb2
from tend_client._gen.tend.v1 import process_pb2 as _process_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PluginState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_STATE_UNSPECIFIED: _ClassVar[PluginState]
    PLUGIN_STATE_STARTING: _ClassVar[PluginState]
    PLUGIN_STATE_SERVING: _ClassVar[PluginState]
    PLUGIN_STATE_EXITED: _ClassVar[PluginState]
    PLUGIN_STATE_RESTARTING: _ClassVar[PluginState]
    PLUGIN_STATE_FAILED: _ClassVar[PluginState]
    PLUGIN_STATE_UNLOADED: _ClassVar[PluginState]

class PluginNetwork(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_NETWORK_UNSPECIFIED: _ClassVar[PluginNetwork]
    PLUGIN_NETWORK_UNIX: _ClassVar[PluginNetwork]
    PLUGIN_NETWORK_TCP: _ClassVar[PluginNetwork]

class HandshakeDialect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HANDSHAKE_DIALECT_UNSPECIFIED: _ClassVar[HandshakeDialect]
    HANDSHAKE_DIALECT_GO_PLUGIN: _ClassVar[HandshakeDialect]
    HANDSHAKE_DIALECT_CODEFLY: _ClassVar[HandshakeDialect]

class UnloadStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UNLOAD_STAGE_UNSPECIFIED: _ClassVar[UnloadStage]
    UNLOAD_STAGE_NOT_RUNNING: _ClassVar[UnloadStage]
    UNLOAD_STAGE_SHUTDOWN: _ClassVar[UnloadStage]
    UNLOAD_STAGE_SIGTERM: _ClassVar[UnloadStage]
    UNLOAD_STAGE_SIGKILL: _ClassVar[UnloadStage]

class PluginEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLUGIN_EVENT_KIND_UNSPECIFIED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_LOADED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_EXITED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_RESTARTING: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_RESTARTED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_FAILED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_UNLOADED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_LAGGED: _ClassVar[PluginEventKind]
    PLUGIN_EVENT_KIND_INSTALLING: _ClassVar[PluginEventKind]

class InstallPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTALL_PHASE_UNSPECIFIED: _ClassVar[InstallPhase]
    INSTALL_PHASE_RESOLVE: _ClassVar[InstallPhase]
    INSTALL_PHASE_DOWNLOAD: _ClassVar[InstallPhase]
    INSTALL_PHASE_VERIFY: _ClassVar[InstallPhase]
    INSTALL_PHASE_DONE: _ClassVar[InstallPhase]
PLUGIN_STATE_UNSPECIFIED: PluginState
PLUGIN_STATE_STARTING: PluginState
PLUGIN_STATE_SERVING: PluginState
PLUGIN_STATE_EXITED: PluginState
PLUGIN_STATE_RESTARTING: PluginState
PLUGIN_STATE_FAILED: PluginState
PLUGIN_STATE_UNLOADED: PluginState
PLUGIN_NETWORK_UNSPECIFIED: PluginNetwork
PLUGIN_NETWORK_UNIX: PluginNetwork
PLUGIN_NETWORK_TCP: PluginNetwork
HANDSHAKE_DIALECT_UNSPECIFIED: HandshakeDialect
HANDSHAKE_DIALECT_GO_PLUGIN: HandshakeDialect
HANDSHAKE_DIALECT_CODEFLY: HandshakeDialect
UNLOAD_STAGE_UNSPECIFIED: UnloadStage
UNLOAD_STAGE_NOT_RUNNING: UnloadStage
UNLOAD_STAGE_SHUTDOWN: UnloadStage
UNLOAD_STAGE_SIGTERM: UnloadStage
UNLOAD_STAGE_SIGKILL: UnloadStage
PLUGIN_EVENT_KIND_UNSPECIFIED: PluginEventKind
PLUGIN_EVENT_KIND_LOADED: PluginEventKind
PLUGIN_EVENT_KIND_EXITED: PluginEventKind
PLUGIN_EVENT_KIND_RESTARTING: PluginEventKind
PLUGIN_EVENT_KIND_RESTARTED: PluginEventKind
PLUGIN_EVENT_KIND_FAILED: PluginEventKind
PLUGIN_EVENT_KIND_UNLOADED: PluginEventKind
PLUGIN_EVENT_KIND_LAGGED: PluginEventKind
PLUGIN_EVENT_KIND_INSTALLING: PluginEventKind
INSTALL_PHASE_UNSPECIFIED: InstallPhase
INSTALL_PHASE_RESOLVE: InstallPhase
INSTALL_PHASE_DOWNLOAD: InstallPhase
INSTALL_PHASE_VERIFY: InstallPhase
INSTALL_PHASE_DONE: InstallPhase

class PluginSpec(_message.Message):
    __slots__ = ("name", "binary", "args", "env", "cwd", "environment_id", "handshake_timeout_ms", "dial_timeout_ms", "magic_cookie_key", "magic_cookie_value", "protocol_versions", "restart", "unload_grace_ms", "package", "version")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    HANDSHAKE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    DIAL_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAGIC_COOKIE_KEY_FIELD_NUMBER: _ClassVar[int]
    MAGIC_COOKIE_VALUE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    UNLOAD_GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    binary: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    environment_id: str
    handshake_timeout_ms: int
    dial_timeout_ms: int
    magic_cookie_key: str
    magic_cookie_value: str
    protocol_versions: _containers.RepeatedScalarFieldContainer[int]
    restart: _agent_pb2.RestartPolicy
    unload_grace_ms: int
    package: str
    version: str
    def __init__(self, name: _Optional[str] = ..., binary: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., environment_id: _Optional[str] = ..., handshake_timeout_ms: _Optional[int] = ..., dial_timeout_ms: _Optional[int] = ..., magic_cookie_key: _Optional[str] = ..., magic_cookie_value: _Optional[str] = ..., protocol_versions: _Optional[_Iterable[int]] = ..., restart: _Optional[_Union[_agent_pb2.RestartPolicy, _Mapping]] = ..., unload_grace_ms: _Optional[int] = ..., package: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class PluginInfo(_message.Message):
    __slots__ = ("spec", "state", "pid", "process_id", "binary_path", "network", "address", "dialect", "core_protocol_version", "app_protocol_version", "handshake_line", "services", "version", "started_at_unix_ms", "serving_since_unix_ms", "restart_count", "last_exit", "last_error")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    BINARY_PATH_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    CORE_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    HANDSHAKE_LINE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    SERVING_SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    spec: PluginSpec
    state: PluginState
    pid: int
    process_id: str
    binary_path: str
    network: PluginNetwork
    address: str
    dialect: HandshakeDialect
    core_protocol_version: int
    app_protocol_version: int
    handshake_line: str
    services: _containers.RepeatedScalarFieldContainer[str]
    version: str
    started_at_unix_ms: int
    serving_since_unix_ms: int
    restart_count: int
    last_exit: _process_pb2.ExitStatus
    last_error: str
    def __init__(self, spec: _Optional[_Union[PluginSpec, _Mapping]] = ..., state: _Optional[_Union[PluginState, str]] = ..., pid: _Optional[int] = ..., process_id: _Optional[str] = ..., binary_path: _Optional[str] = ..., network: _Optional[_Union[PluginNetwork, str]] = ..., address: _Optional[str] = ..., dialect: _Optional[_Union[HandshakeDialect, str]] = ..., core_protocol_version: _Optional[int] = ..., app_protocol_version: _Optional[int] = ..., handshake_line: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., version: _Optional[str] = ..., started_at_unix_ms: _Optional[int] = ..., serving_since_unix_ms: _Optional[int] = ..., restart_count: _Optional[int] = ..., last_exit: _Optional[_Union[_process_pb2.ExitStatus, _Mapping]] = ..., last_error: _Optional[str] = ...) -> None: ...

class LoadRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: PluginSpec
    def __init__(self, spec: _Optional[_Union[PluginSpec, _Mapping]] = ...) -> None: ...

class LoadResponse(_message.Message):
    __slots__ = ("plugin",)
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    plugin: PluginInfo
    def __init__(self, plugin: _Optional[_Union[PluginInfo, _Mapping]] = ...) -> None: ...

class UnloadRequest(_message.Message):
    __slots__ = ("name", "grace_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    grace_ms: int
    def __init__(self, name: _Optional[str] = ..., grace_ms: _Optional[int] = ...) -> None: ...

class UnloadResponse(_message.Message):
    __slots__ = ("plugin", "stage")
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    plugin: PluginInfo
    stage: UnloadStage
    def __init__(self, plugin: _Optional[_Union[PluginInfo, _Mapping]] = ..., stage: _Optional[_Union[UnloadStage, str]] = ...) -> None: ...

class LoaderServiceListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoaderServiceListResponse(_message.Message):
    __slots__ = ("plugins",)
    PLUGINS_FIELD_NUMBER: _ClassVar[int]
    plugins: _containers.RepeatedCompositeFieldContainer[PluginInfo]
    def __init__(self, plugins: _Optional[_Iterable[_Union[PluginInfo, _Mapping]]] = ...) -> None: ...

class LoaderServiceGetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LoaderServiceGetResponse(_message.Message):
    __slots__ = ("plugin",)
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    plugin: PluginInfo
    def __init__(self, plugin: _Optional[_Union[PluginInfo, _Mapping]] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("name", "stream", "tail_bytes", "follow")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    name: str
    stream: _process_pb2.Stream
    tail_bytes: int
    follow: bool
    def __init__(self, name: _Optional[str] = ..., stream: _Optional[_Union[_process_pb2.Stream, str]] = ..., tail_bytes: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class LogsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _process_pb2.ProcessEvent
    def __init__(self, event: _Optional[_Union[_process_pb2.ProcessEvent, _Mapping]] = ...) -> None: ...

class PluginEvent(_message.Message):
    __slots__ = ("name", "kind", "plugin", "exit", "stderr_tail", "backoff_ms", "error", "at_unix_ms", "missed", "install")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    STDERR_TAIL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    INSTALL_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: PluginEventKind
    plugin: PluginInfo
    exit: _process_pb2.ExitStatus
    stderr_tail: str
    backoff_ms: int
    error: str
    at_unix_ms: int
    missed: int
    install: InstallResponse
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[PluginEventKind, str]] = ..., plugin: _Optional[_Union[PluginInfo, _Mapping]] = ..., exit: _Optional[_Union[_process_pb2.ExitStatus, _Mapping]] = ..., stderr_tail: _Optional[str] = ..., backoff_ms: _Optional[int] = ..., error: _Optional[str] = ..., at_unix_ms: _Optional[int] = ..., missed: _Optional[int] = ..., install: _Optional[_Union[InstallResponse, _Mapping]] = ...) -> None: ...

class LoaderServiceWatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LoaderServiceWatchResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: PluginEvent
    def __init__(self, event: _Optional[_Union[PluginEvent, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ("name", "version", "services", "app_protocol_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    services: _containers.RepeatedScalarFieldContainer[str]
    app_protocol_version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., app_protocol_version: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("grace_ms",)
    GRACE_MS_FIELD_NUMBER: _ClassVar[int]
    grace_ms: int
    def __init__(self, grace_ms: _Optional[int] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResolveRequest(_message.Message):
    __slots__ = ("package", "version")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("plugin",)
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    plugin: ResolvedPlugin
    def __init__(self, plugin: _Optional[_Union[ResolvedPlugin, _Mapping]] = ...) -> None: ...

class ResolvedPlugin(_message.Message):
    __slots__ = ("package", "version", "store", "digest", "path", "size")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    store: str
    digest: str
    path: str
    size: int
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ..., store: _Optional[str] = ..., digest: _Optional[str] = ..., path: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class InstallRequest(_message.Message):
    __slots__ = ("package", "version")
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    package: str
    version: str
    def __init__(self, package: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class InstallResponse(_message.Message):
    __slots__ = ("phase", "done_bytes", "total_bytes", "plugin", "message")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    phase: InstallPhase
    done_bytes: int
    total_bytes: int
    plugin: ResolvedPlugin
    message: str
    def __init__(self, phase: _Optional[_Union[InstallPhase, str]] = ..., done_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., plugin: _Optional[_Union[ResolvedPlugin, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...
