from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Stream(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STREAM_UNSPECIFIED: _ClassVar[Stream]
    STREAM_STDOUT: _ClassVar[Stream]
    STREAM_STDERR: _ClassVar[Stream]
    STREAM_PTY: _ClassVar[Stream]

class ProcessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_STATE_UNSPECIFIED: _ClassVar[ProcessState]
    PROCESS_STATE_RUNNING: _ClassVar[ProcessState]
    PROCESS_STATE_EXITED: _ClassVar[ProcessState]

class ReadinessState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READINESS_STATE_UNSPECIFIED: _ClassVar[ReadinessState]
    READINESS_STATE_PENDING: _ClassVar[ReadinessState]
    READINESS_STATE_READY: _ClassVar[ReadinessState]
    READINESS_STATE_FAILED: _ClassVar[ReadinessState]

class KernelState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KERNEL_STATE_UNSPECIFIED: _ClassVar[KernelState]
    KERNEL_STATE_RUNNING: _ClassVar[KernelState]
    KERNEL_STATE_SLEEPING: _ClassVar[KernelState]
    KERNEL_STATE_DISK_WAIT: _ClassVar[KernelState]
    KERNEL_STATE_STOPPED: _ClassVar[KernelState]
    KERNEL_STATE_ZOMBIE: _ClassVar[KernelState]
    KERNEL_STATE_IDLE: _ClassVar[KernelState]
    KERNEL_STATE_DEAD: _ClassVar[KernelState]

class WaitReadyResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WAIT_READY_RESULT_UNSPECIFIED: _ClassVar[WaitReadyResult]
    WAIT_READY_RESULT_READY: _ClassVar[WaitReadyResult]
    WAIT_READY_RESULT_FAILED: _ClassVar[WaitReadyResult]
    WAIT_READY_RESULT_TIMED_OUT: _ClassVar[WaitReadyResult]

class ProcessEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_EVENT_KIND_UNSPECIFIED: _ClassVar[ProcessEventKind]
    PROCESS_EVENT_KIND_STARTED: _ClassVar[ProcessEventKind]
    PROCESS_EVENT_KIND_EXITED: _ClassVar[ProcessEventKind]
    PROCESS_EVENT_KIND_REMOVED: _ClassVar[ProcessEventKind]
    PROCESS_EVENT_KIND_LAGGED: _ClassVar[ProcessEventKind]
    PROCESS_EVENT_KIND_READY: _ClassVar[ProcessEventKind]
STREAM_UNSPECIFIED: Stream
STREAM_STDOUT: Stream
STREAM_STDERR: Stream
STREAM_PTY: Stream
PROCESS_STATE_UNSPECIFIED: ProcessState
PROCESS_STATE_RUNNING: ProcessState
PROCESS_STATE_EXITED: ProcessState
READINESS_STATE_UNSPECIFIED: ReadinessState
READINESS_STATE_PENDING: ReadinessState
READINESS_STATE_READY: ReadinessState
READINESS_STATE_FAILED: ReadinessState
KERNEL_STATE_UNSPECIFIED: KernelState
KERNEL_STATE_RUNNING: KernelState
KERNEL_STATE_SLEEPING: KernelState
KERNEL_STATE_DISK_WAIT: KernelState
KERNEL_STATE_STOPPED: KernelState
KERNEL_STATE_ZOMBIE: KernelState
KERNEL_STATE_IDLE: KernelState
KERNEL_STATE_DEAD: KernelState
WAIT_READY_RESULT_UNSPECIFIED: WaitReadyResult
WAIT_READY_RESULT_READY: WaitReadyResult
WAIT_READY_RESULT_FAILED: WaitReadyResult
WAIT_READY_RESULT_TIMED_OUT: WaitReadyResult
PROCESS_EVENT_KIND_UNSPECIFIED: ProcessEventKind
PROCESS_EVENT_KIND_STARTED: ProcessEventKind
PROCESS_EVENT_KIND_EXITED: ProcessEventKind
PROCESS_EVENT_KIND_REMOVED: ProcessEventKind
PROCESS_EVENT_KIND_LAGGED: ProcessEventKind
PROCESS_EVENT_KIND_READY: ProcessEventKind

class ProcessSpec(_message.Message):
    __slots__ = ("argv", "env", "cwd", "tags", "name", "pty", "stdin", "non_interactive", "clear_env", "environment_id", "readiness", "nice", "oom_score_adj", "limits")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    NON_INTERACTIVE_FIELD_NUMBER: _ClassVar[int]
    CLEAR_ENV_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    OOM_SCORE_ADJ_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    cwd: str
    tags: _containers.ScalarMap[str, str]
    name: str
    pty: PtySize
    stdin: bool
    non_interactive: bool
    clear_env: bool
    environment_id: str
    readiness: ReadinessProbe
    nice: int
    oom_score_adj: int
    limits: ResourceLimits
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., name: _Optional[str] = ..., pty: _Optional[_Union[PtySize, _Mapping]] = ..., stdin: _Optional[bool] = ..., non_interactive: _Optional[bool] = ..., clear_env: _Optional[bool] = ..., environment_id: _Optional[str] = ..., readiness: _Optional[_Union[ReadinessProbe, _Mapping]] = ..., nice: _Optional[int] = ..., oom_score_adj: _Optional[int] = ..., limits: _Optional[_Union[ResourceLimits, _Mapping]] = ...) -> None: ...

class ReadinessProbe(_message.Message):
    __slots__ = ("tcp", "http", "log", "exec", "interval_ms", "timeout_ms", "success_threshold", "initial_delay_ms")
    TCP_FIELD_NUMBER: _ClassVar[int]
    HTTP_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    INITIAL_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    tcp: TcpProbe
    http: HttpProbe
    log: LogProbe
    exec: ExecProbe
    interval_ms: int
    timeout_ms: int
    success_threshold: int
    initial_delay_ms: int
    def __init__(self, tcp: _Optional[_Union[TcpProbe, _Mapping]] = ..., http: _Optional[_Union[HttpProbe, _Mapping]] = ..., log: _Optional[_Union[LogProbe, _Mapping]] = ..., exec: _Optional[_Union[ExecProbe, _Mapping]] = ..., interval_ms: _Optional[int] = ..., timeout_ms: _Optional[int] = ..., success_threshold: _Optional[int] = ..., initial_delay_ms: _Optional[int] = ...) -> None: ...

class TcpProbe(_message.Message):
    __slots__ = ("port", "host")
    PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    port: int
    host: str
    def __init__(self, port: _Optional[int] = ..., host: _Optional[str] = ...) -> None: ...

class HttpProbe(_message.Message):
    __slots__ = ("port", "host", "path")
    PORT_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    port: int
    host: str
    path: str
    def __init__(self, port: _Optional[int] = ..., host: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class LogProbe(_message.Message):
    __slots__ = ("pattern", "stream")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    stream: Stream
    def __init__(self, pattern: _Optional[str] = ..., stream: _Optional[_Union[Stream, str]] = ...) -> None: ...

class ExecProbe(_message.Message):
    __slots__ = ("argv",)
    ARGV_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, argv: _Optional[_Iterable[str]] = ...) -> None: ...

class ResourceLimits(_message.Message):
    __slots__ = ("memory_max_bytes", "pids_max")
    MEMORY_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    PIDS_MAX_FIELD_NUMBER: _ClassVar[int]
    memory_max_bytes: int
    pids_max: int
    def __init__(self, memory_max_bytes: _Optional[int] = ..., pids_max: _Optional[int] = ...) -> None: ...

class PtySize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ExitStatus(_message.Message):
    __slots__ = ("exit_code", "signal", "signal_name", "core_dumped", "wall_duration_ms", "output_drain_timed_out")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_NAME_FIELD_NUMBER: _ClassVar[int]
    CORE_DUMPED_FIELD_NUMBER: _ClassVar[int]
    WALL_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_DRAIN_TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    signal: int
    signal_name: str
    core_dumped: bool
    wall_duration_ms: int
    output_drain_timed_out: bool
    def __init__(self, exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., signal_name: _Optional[str] = ..., core_dumped: _Optional[bool] = ..., wall_duration_ms: _Optional[int] = ..., output_drain_timed_out: _Optional[bool] = ...) -> None: ...

class StreamInfo(_message.Message):
    __slots__ = ("stream", "total_bytes", "tail_offset", "head_bytes")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TAIL_OFFSET_FIELD_NUMBER: _ClassVar[int]
    HEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    total_bytes: int
    tail_offset: int
    head_bytes: int
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., total_bytes: _Optional[int] = ..., tail_offset: _Optional[int] = ..., head_bytes: _Optional[int] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("id", "name", "argv", "cwd", "tags", "state", "pid", "pgid", "pty", "stdin_open", "started_at_unix_ms", "exit", "streams", "environment_id", "request_id", "usage", "leader_usage", "ports", "readiness", "nice", "oom_score_adj", "limits")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PGID_FIELD_NUMBER: _ClassVar[int]
    PTY_FIELD_NUMBER: _ClassVar[int]
    STDIN_OPEN_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_USAGE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    READINESS_FIELD_NUMBER: _ClassVar[int]
    NICE_FIELD_NUMBER: _ClassVar[int]
    OOM_SCORE_ADJ_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    tags: _containers.ScalarMap[str, str]
    state: ProcessState
    pid: int
    pgid: int
    pty: PtySize
    stdin_open: bool
    started_at_unix_ms: int
    exit: ExitStatus
    streams: _containers.RepeatedCompositeFieldContainer[StreamInfo]
    environment_id: str
    request_id: str
    usage: ResourceUsage
    leader_usage: ResourceUsage
    ports: _containers.RepeatedCompositeFieldContainer[ListeningPort]
    readiness: Readiness
    nice: int
    oom_score_adj: int
    limits: ResourceLimits
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[ProcessState, str]] = ..., pid: _Optional[int] = ..., pgid: _Optional[int] = ..., pty: _Optional[_Union[PtySize, _Mapping]] = ..., stdin_open: _Optional[bool] = ..., started_at_unix_ms: _Optional[int] = ..., exit: _Optional[_Union[ExitStatus, _Mapping]] = ..., streams: _Optional[_Iterable[_Union[StreamInfo, _Mapping]]] = ..., environment_id: _Optional[str] = ..., request_id: _Optional[str] = ..., usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., leader_usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[ListeningPort, _Mapping]]] = ..., readiness: _Optional[_Union[Readiness, _Mapping]] = ..., nice: _Optional[int] = ..., oom_score_adj: _Optional[int] = ..., limits: _Optional[_Union[ResourceLimits, _Mapping]] = ...) -> None: ...

class Readiness(_message.Message):
    __slots__ = ("state", "checks", "last_error", "ready_at_unix_ms", "ready_after_ms")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    READY_AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    READY_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    state: ReadinessState
    checks: int
    last_error: str
    ready_at_unix_ms: int
    ready_after_ms: int
    def __init__(self, state: _Optional[_Union[ReadinessState, str]] = ..., checks: _Optional[int] = ..., last_error: _Optional[str] = ..., ready_at_unix_ms: _Optional[int] = ..., ready_after_ms: _Optional[int] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("state", "user_cpu_ms", "system_cpu_ms", "cpu_percent", "rss_bytes", "peak_rss_bytes", "processes", "whole_environment")
    STATE_FIELD_NUMBER: _ClassVar[int]
    USER_CPU_MS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_CPU_MS_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    WHOLE_ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    state: KernelState
    user_cpu_ms: int
    system_cpu_ms: int
    cpu_percent: float
    rss_bytes: int
    peak_rss_bytes: int
    processes: int
    whole_environment: bool
    def __init__(self, state: _Optional[_Union[KernelState, str]] = ..., user_cpu_ms: _Optional[int] = ..., system_cpu_ms: _Optional[int] = ..., cpu_percent: _Optional[float] = ..., rss_bytes: _Optional[int] = ..., peak_rss_bytes: _Optional[int] = ..., processes: _Optional[int] = ..., whole_environment: _Optional[bool] = ...) -> None: ...

class ListeningPort(_message.Message):
    __slots__ = ("protocol", "address", "port", "pid")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    address: str
    port: int
    pid: int
    def __init__(self, protocol: _Optional[str] = ..., address: _Optional[str] = ..., port: _Optional[int] = ..., pid: _Optional[int] = ...) -> None: ...

class ProcessEvent(_message.Message):
    __slots__ = ("started", "data", "gap", "exited", "ready")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    started: ProcessInfo
    data: DataEvent
    gap: GapEvent
    exited: ExitStatus
    ready: ReadyEvent
    def __init__(self, started: _Optional[_Union[ProcessInfo, _Mapping]] = ..., data: _Optional[_Union[DataEvent, _Mapping]] = ..., gap: _Optional[_Union[GapEvent, _Mapping]] = ..., exited: _Optional[_Union[ExitStatus, _Mapping]] = ..., ready: _Optional[_Union[ReadyEvent, _Mapping]] = ...) -> None: ...

class ReadyEvent(_message.Message):
    __slots__ = ("readiness", "offsets")
    READINESS_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    readiness: Readiness
    offsets: _containers.RepeatedCompositeFieldContainer[StreamInfo]
    def __init__(self, readiness: _Optional[_Union[Readiness, _Mapping]] = ..., offsets: _Optional[_Iterable[_Union[StreamInfo, _Mapping]]] = ...) -> None: ...

class DataEvent(_message.Message):
    __slots__ = ("stream", "offset", "data")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    offset: int
    data: bytes
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GapEvent(_message.Message):
    __slots__ = ("stream", "offset", "length")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    offset: int
    length: int
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("stream", "head_bytes", "tail_bytes", "max_line_bytes")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    HEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_LINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    head_bytes: int
    tail_bytes: int
    max_line_bytes: int
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., head_bytes: _Optional[int] = ..., tail_bytes: _Optional[int] = ..., max_line_bytes: _Optional[int] = ...) -> None: ...

class StreamOutput(_message.Message):
    __slots__ = ("stream", "text", "total_bytes", "omitted_bytes", "cut_lines", "cut_line_bytes", "truncated")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    OMITTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CUT_LINES_FIELD_NUMBER: _ClassVar[int]
    CUT_LINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    stream: Stream
    text: str
    total_bytes: int
    omitted_bytes: int
    cut_lines: int
    cut_line_bytes: int
    truncated: bool
    def __init__(self, stream: _Optional[_Union[Stream, str]] = ..., text: _Optional[str] = ..., total_bytes: _Optional[int] = ..., omitted_bytes: _Optional[int] = ..., cut_lines: _Optional[int] = ..., cut_line_bytes: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ("spec", "request_id", "wait_timeout_ms", "output")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    spec: ProcessSpec
    request_id: str
    wait_timeout_ms: int
    output: OutputOptions
    def __init__(self, spec: _Optional[_Union[ProcessSpec, _Mapping]] = ..., request_id: _Optional[str] = ..., wait_timeout_ms: _Optional[int] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("process", "timed_out", "output")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    timed_out: bool
    output: _containers.RepeatedCompositeFieldContainer[StreamOutput]
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., timed_out: _Optional[bool] = ..., output: _Optional[_Iterable[_Union[StreamOutput, _Mapping]]] = ...) -> None: ...

class RunRequest(_message.Message):
    __slots__ = ("spec", "request_id", "observer", "kill_on_disconnect")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVER_FIELD_NUMBER: _ClassVar[int]
    KILL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    spec: ProcessSpec
    request_id: str
    observer: bool
    kill_on_disconnect: bool
    def __init__(self, spec: _Optional[_Union[ProcessSpec, _Mapping]] = ..., request_id: _Optional[str] = ..., observer: _Optional[bool] = ..., kill_on_disconnect: _Optional[bool] = ...) -> None: ...

class RunResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: ProcessEvent
    def __init__(self, event: _Optional[_Union[ProcessEvent, _Mapping]] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("id", "from_offset", "stream", "no_follow", "lossless")
    ID_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    NO_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    id: str
    from_offset: int
    stream: Stream
    no_follow: bool
    lossless: bool
    def __init__(self, id: _Optional[str] = ..., from_offset: _Optional[int] = ..., stream: _Optional[_Union[Stream, str]] = ..., no_follow: _Optional[bool] = ..., lossless: _Optional[bool] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: ProcessEvent
    def __init__(self, event: _Optional[_Union[ProcessEvent, _Mapping]] = ...) -> None: ...

class AttachOpen(_message.Message):
    __slots__ = ("id", "read_only", "from_offset", "replay_bytes", "lossless", "kill_on_disconnect")
    ID_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    REPLAY_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOSSLESS_FIELD_NUMBER: _ClassVar[int]
    KILL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    id: str
    read_only: bool
    from_offset: int
    replay_bytes: int
    lossless: bool
    kill_on_disconnect: bool
    def __init__(self, id: _Optional[str] = ..., read_only: _Optional[bool] = ..., from_offset: _Optional[int] = ..., replay_bytes: _Optional[int] = ..., lossless: _Optional[bool] = ..., kill_on_disconnect: _Optional[bool] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("open", "input", "resize", "close_input")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    CLOSE_INPUT_FIELD_NUMBER: _ClassVar[int]
    open: AttachOpen
    input: bytes
    resize: PtySize
    close_input: bool
    def __init__(self, open: _Optional[_Union[AttachOpen, _Mapping]] = ..., input: _Optional[bytes] = ..., resize: _Optional[_Union[PtySize, _Mapping]] = ..., close_input: _Optional[bool] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: ProcessEvent
    def __init__(self, event: _Optional[_Union[ProcessEvent, _Mapping]] = ...) -> None: ...

class SendInputRequest(_message.Message):
    __slots__ = ("id", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    data: bytes
    def __init__(self, id: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class SendInputResponse(_message.Message):
    __slots__ = ("bytes_accepted",)
    BYTES_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    bytes_accepted: int
    def __init__(self, bytes_accepted: _Optional[int] = ...) -> None: ...

class CloseInputRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class CloseInputResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResizeRequest(_message.Message):
    __slots__ = ("id", "size")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    id: str
    size: PtySize
    def __init__(self, id: _Optional[str] = ..., size: _Optional[_Union[PtySize, _Mapping]] = ...) -> None: ...

class ResizeResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SignalRequest(_message.Message):
    __slots__ = ("id", "signal", "leader_only")
    ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    LEADER_ONLY_FIELD_NUMBER: _ClassVar[int]
    id: str
    signal: str
    leader_only: bool
    def __init__(self, id: _Optional[str] = ..., signal: _Optional[str] = ..., leader_only: _Optional[bool] = ...) -> None: ...

class SignalResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("id", "timeout_ms")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_ms: int
    def __init__(self, id: _Optional[str] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class WaitResponse(_message.Message):
    __slots__ = ("process", "timed_out")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    timed_out: bool
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class WaitReadyRequest(_message.Message):
    __slots__ = ("id", "timeout_ms", "output")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    id: str
    timeout_ms: int
    output: OutputOptions
    def __init__(self, id: _Optional[str] = ..., timeout_ms: _Optional[int] = ..., output: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class WaitReadyResponse(_message.Message):
    __slots__ = ("result", "process", "output")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    result: WaitReadyResult
    process: ProcessInfo
    output: _containers.RepeatedCompositeFieldContainer[StreamOutput]
    def __init__(self, result: _Optional[_Union[WaitReadyResult, str]] = ..., process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., output: _Optional[_Iterable[_Union[StreamOutput, _Mapping]]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("process",)
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("state", "tags", "with_usage", "listening", "name", "with_ports")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    WITH_USAGE_FIELD_NUMBER: _ClassVar[int]
    LISTENING_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    WITH_PORTS_FIELD_NUMBER: _ClassVar[int]
    state: ProcessState
    tags: _containers.ScalarMap[str, str]
    with_usage: bool
    listening: bool
    name: str
    with_ports: bool
    def __init__(self, state: _Optional[_Union[ProcessState, str]] = ..., tags: _Optional[_Mapping[str, str]] = ..., with_usage: _Optional[bool] = ..., listening: _Optional[bool] = ..., name: _Optional[str] = ..., with_ports: _Optional[bool] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class OutputRequest(_message.Message):
    __slots__ = ("id", "options")
    ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    options: OutputOptions
    def __init__(self, id: _Optional[str] = ..., options: _Optional[_Union[OutputOptions, _Mapping]] = ...) -> None: ...

class OutputResponse(_message.Message):
    __slots__ = ("process", "output")
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    process: ProcessInfo
    output: _containers.RepeatedCompositeFieldContainer[StreamOutput]
    def __init__(self, process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., output: _Optional[_Iterable[_Union[StreamOutput, _Mapping]]] = ...) -> None: ...

class RemoveRequest(_message.Message):
    __slots__ = ("id", "force")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    force: bool
    def __init__(self, id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProcessServiceWatchRequest(_message.Message):
    __slots__ = ("tags",)
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, str]
    def __init__(self, tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ProcessServiceWatchResponse(_message.Message):
    __slots__ = ("kind", "process", "at_unix_ms", "missed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    AT_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    kind: ProcessEventKind
    process: ProcessInfo
    at_unix_ms: int
    missed: int
    def __init__(self, kind: _Optional[_Union[ProcessEventKind, str]] = ..., process: _Optional[_Union[ProcessInfo, _Mapping]] = ..., at_unix_ms: _Optional[int] = ..., missed: _Optional[int] = ...) -> None: ...
