from tend_client._gen.tend.v1 import process_pb2 as _process_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_KIND_UNSPECIFIED: _ClassVar[AgentKind]
    AGENT_KIND_CREW: _ClassVar[AgentKind]
    AGENT_KIND_TASK: _ClassVar[AgentKind]

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_RUNNING: _ClassVar[AgentStatus]
    AGENT_STATUS_EXITED: _ClassVar[AgentStatus]
    AGENT_STATUS_RESTARTING: _ClassVar[AgentStatus]
    AGENT_STATUS_FAILED: _ClassVar[AgentStatus]
    AGENT_STATUS_STOPPED: _ClassVar[AgentStatus]

class NudgeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NUDGE_MODE_UNSPECIFIED: _ClassVar[NudgeMode]
    NUDGE_MODE_IMMEDIATE: _ClassVar[NudgeMode]
    NUDGE_MODE_WAIT_IDLE: _ClassVar[NudgeMode]

class NudgeOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NUDGE_OUTCOME_UNSPECIFIED: _ClassVar[NudgeOutcome]
    NUDGE_OUTCOME_DELIVERED: _ClassVar[NudgeOutcome]
    NUDGE_OUTCOME_NOT_RUNNING: _ClassVar[NudgeOutcome]
    NUDGE_OUTCOME_TIMED_OUT: _ClassVar[NudgeOutcome]

class IdleOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    IDLE_OUTCOME_UNSPECIFIED: _ClassVar[IdleOutcome]
    IDLE_OUTCOME_IDLE: _ClassVar[IdleOutcome]
    IDLE_OUTCOME_TIMED_OUT: _ClassVar[IdleOutcome]
    IDLE_OUTCOME_NOT_RUNNING: _ClassVar[IdleOutcome]

class AgentEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_EVENT_KIND_UNSPECIFIED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_SPAWNED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_IDLE: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_BUSY: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_EXITED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_RESTARTING: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_FAILED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_STOPPED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_REMOVED: _ClassVar[AgentEventKind]
    AGENT_EVENT_KIND_LAGGED: _ClassVar[AgentEventKind]
AGENT_KIND_UNSPECIFIED: AgentKind
AGENT_KIND_CREW: AgentKind
AGENT_KIND_TASK: AgentKind
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_RUNNING: AgentStatus
AGENT_STATUS_EXITED: AgentStatus
AGENT_STATUS_RESTARTING: AgentStatus
AGENT_STATUS_FAILED: AgentStatus
AGENT_STATUS_STOPPED: AgentStatus
NUDGE_MODE_UNSPECIFIED: NudgeMode
NUDGE_MODE_IMMEDIATE: NudgeMode
NUDGE_MODE_WAIT_IDLE: NudgeMode
NUDGE_OUTCOME_UNSPECIFIED: NudgeOutcome
NUDGE_OUTCOME_DELIVERED: NudgeOutcome
NUDGE_OUTCOME_NOT_RUNNING: NudgeOutcome
NUDGE_OUTCOME_TIMED_OUT: NudgeOutcome
IDLE_OUTCOME_UNSPECIFIED: IdleOutcome
IDLE_OUTCOME_IDLE: IdleOutcome
IDLE_OUTCOME_TIMED_OUT: IdleOutcome
IDLE_OUTCOME_NOT_RUNNING: IdleOutcome
AGENT_EVENT_KIND_UNSPECIFIED: AgentEventKind
AGENT_EVENT_KIND_SPAWNED: AgentEventKind
AGENT_EVENT_KIND_IDLE: AgentEventKind
AGENT_EVENT_KIND_BUSY: AgentEventKind
AGENT_EVENT_KIND_EXITED: AgentEventKind
AGENT_EVENT_KIND_RESTARTING: AgentEventKind
AGENT_EVENT_KIND_FAILED: AgentEventKind
AGENT_EVENT_KIND_STOPPED: AgentEventKind
AGENT_EVENT_KIND_REMOVED: AgentEventKind
AGENT_EVENT_KIND_LAGGED: AgentEventKind

class RestartPolicy(_message.Message):
    __slots__ = ("initial_backoff_ms", "max_backoff_ms", "stable_after_ms", "start_limit")
    INITIAL_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    STABLE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    START_LIMIT_FIELD_NUMBER: _ClassVar[int]
    initial_backoff_ms: int
    max_backoff_ms: int
    stable_after_ms: int
    start_limit: int
    def __init__(self, initial_backoff_ms: _Optional[int] = ..., max_backoff_ms: _Optional[int] = ..., stable_after_ms: _Optional[int] = ..., start_limit: _Optional[int] = ...) -> None: ...

class AgentSpec(_message.Message):
    __slots__ = ("name", "argv", "env", "cwd", "prompt_file", "size", "kind", "restart", "environment_id")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FILE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    RESTART_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    prompt_file: str
    size: _process_pb2.PtySize
    kind: AgentKind
    restart: RestartPolicy
    environment_id: str
    def __init__(self, name: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., prompt_file: _Optional[str] = ..., size: _Optional[_Union[_process_pb2.PtySize, _Mapping]] = ..., kind: _Optional[_Union[AgentKind, str]] = ..., restart: _Optional[_Union[RestartPolicy, _Mapping]] = ..., environment_id: _Optional[str] = ...) -> None: ...

class AgentInfo(_message.Message):
    __slots__ = ("spec", "status", "pid", "process_id", "started_at_unix_ms", "uptime_ms", "last_exit", "restart_count", "last_activity_unix_ms", "idle")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    UPTIME_MS_FIELD_NUMBER: _ClassVar[int]
    LAST_EXIT_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTIVITY_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    spec: AgentSpec
    status: AgentStatus
    pid: int
    process_id: str
    started_at_unix_ms: int
    uptime_ms: int
    last_exit: _process_pb2.ExitStatus
    restart_count: int
    last_activity_unix_ms: int
    idle: bool
    def __init__(self, spec: _Optional[_Union[AgentSpec, _Mapping]] = ..., status: _Optional[_Union[AgentStatus, str]] = ..., pid: _Optional[int] = ..., process_id: _Optional[str] = ..., started_at_unix_ms: _Optional[int] = ..., uptime_ms: _Optional[int] = ..., last_exit: _Optional[_Union[_process_pb2.ExitStatus, _Mapping]] = ..., restart_count: _Optional[int] = ..., last_activity_unix_ms: _Optional[int] = ..., idle: _Optional[bool] = ...) -> None: ...

class SpawnRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: AgentSpec
    def __init__(self, spec: _Optional[_Union[AgentSpec, _Mapping]] = ...) -> None: ...

class SpawnResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentInfo
    def __init__(self, agent: _Optional[_Union[AgentInfo, _Mapping]] = ...) -> None: ...

class AgentServiceListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentServiceListResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentInfo]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentInfo, _Mapping]]] = ...) -> None: ...

class AgentServiceGetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AgentServiceGetResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentInfo
    def __init__(self, agent: _Optional[_Union[AgentInfo, _Mapping]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("name", "timeout_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentInfo
    def __init__(self, agent: _Optional[_Union[AgentInfo, _Mapping]] = ...) -> None: ...

class RespawnRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RespawnResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: AgentInfo
    def __init__(self, agent: _Optional[_Union[AgentInfo, _Mapping]] = ...) -> None: ...

class AgentServiceRemoveRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AgentServiceRemoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NudgeRequest(_message.Message):
    __slots__ = ("name", "message", "mode", "timeout_ms", "no_submit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    NO_SUBMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    message: str
    mode: NudgeMode
    timeout_ms: int
    no_submit: bool
    def __init__(self, name: _Optional[str] = ..., message: _Optional[str] = ..., mode: _Optional[_Union[NudgeMode, str]] = ..., timeout_ms: _Optional[int] = ..., no_submit: _Optional[bool] = ...) -> None: ...

class NudgeResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: NudgeOutcome
    def __init__(self, outcome: _Optional[_Union[NudgeOutcome, str]] = ...) -> None: ...

class WaitIdleRequest(_message.Message):
    __slots__ = ("name", "quiescence_ms", "timeout_ms")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUIESCENCE_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    quiescence_ms: int
    timeout_ms: int
    def __init__(self, name: _Optional[str] = ..., quiescence_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitIdleResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: IdleOutcome
    def __init__(self, outcome: _Optional[_Union[IdleOutcome, str]] = ...) -> None: ...

class RecentOutputRequest(_message.Message):
    __slots__ = ("name", "bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    bytes: int
    def __init__(self, name: _Optional[str] = ..., bytes: _Optional[int] = ...) -> None: ...

class RecentOutputResponse(_message.Message):
    __slots__ = ("data", "offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ...) -> None: ...

class AgentAttachOpen(_message.Message):
    __slots__ = ("name", "read_only", "replay_bytes", "follow_restarts", "lossless")
    NAME_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    REPLAY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    read_only: bool
    replay_bytes: int
    follow_restarts: bool
    lossless: bool
    def __init__(self, name: _Optional[str] = ..., read_only: _Optional[bool] = ..., replay_bytes: _Optional[int] = ..., follow_restarts: _Optional[bool] = ..., lossless: _Optional[bool] = ...) -> None: ...

class AgentServiceAttachRequest(_message.Message):
    __slots__ = ("open", "input", "resize")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    open: AgentAttachOpen
    input: bytes
    resize: _process_pb2.PtySize
    def __init__(self, open: _Optional[_Union[AgentAttachOpen, _Mapping]] = ..., input: _Optional[bytes] = ..., resize: _Optional[_Union[_process_pb2.PtySize, _Mapping]] = ...) -> None: ...

class AgentServiceAttachResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _process_pb2.ProcessEvent
    def __init__(self, event: _Optional[_Union[_process_pb2.ProcessEvent, _Mapping]] = ...) -> None: ...

class AgentEvent(_message.Message):
    __slots__ = ("name", "kind", "exit", "restart_count", "backoff_ms", "pid", "at_unix_ms", "missed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: AgentEventKind
    exit: _process_pb2.ExitStatus
    restart_count: int
    backoff_ms: int
    pid: int
    at_unix_ms: int
    missed: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[AgentEventKind, str]] = ..., exit: _Optional[_Union[_process_pb2.ExitStatus, _Mapping]] = ..., restart_count: _Optional[int] = ..., backoff_ms: _Optional[int] = ..., pid: _Optional[int] = ..., at_unix_ms: _Optional[int] = ..., missed: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: AgentEvent
    def __init__(self, event: _Optional[_Union[AgentEvent, _Mapping]] = ...) -> None: ...
