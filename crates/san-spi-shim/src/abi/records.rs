//! The structs and unions the Winsock switch and a SAN provider exchange, field for field
//! as in `winsock2.h`, `ws2spi.h` and `ddk/ws2san.h` (mingw-w64), with `OVERLAPPED`'s
//! unnamed union and struct named `Anonymous` as in `windows-sys`.

use super::layout::CRecord;
use super::*;

c_records! {
    /// Every record above, in declaration order.
    pub(crate) const RECORDS;

    /// `GUID` (`guiddef.h`) — a 16-byte identifier in Windows byte order.
    pub struct GUID {
        /// `Data1`.
        pub Data1: ULONG,
        /// `Data2`.
        pub Data2: USHORT,
        /// `Data3`.
        pub Data3: USHORT,
        /// `Data4`.
        pub Data4: [BYTE; 8],
    }

    /// `SOCKADDR` — `struct sockaddr`, the generic socket address header.
    pub struct SOCKADDR {
        /// `sa_family` — `AF_INET`, `AF_INET6`, …
        pub sa_family: u_short,
        /// `sa_data` — the family's address bytes.
        pub sa_data: [CHAR; 14],
    }

    /// `TIMEVAL` — Winsock's `struct timeval` (32-bit fields on Windows).
    pub struct TIMEVAL {
        /// `tv_sec`.
        pub tv_sec: LONG,
        /// `tv_usec`.
        pub tv_usec: LONG,
    }

    /// `fd_set` — a set of sockets for `select` (only [`LPWSPSELECT`] uses it; a SAN
    /// provider leaves that slot NULL).
    pub struct fd_set {
        /// `fd_count` — how many entries of `fd_array` are used.
        pub fd_count: u_int,
        /// `fd_array`.
        pub fd_array: [SOCKET; FD_SETSIZE],
    }

    /// `FLOWSPEC` (`qos.h`) — one direction of a QoS request.
    pub struct FLOWSPEC {
        /// `TokenRate`.
        pub TokenRate: ULONG,
        /// `TokenBucketSize`.
        pub TokenBucketSize: ULONG,
        /// `PeakBandwidth`.
        pub PeakBandwidth: ULONG,
        /// `Latency`.
        pub Latency: ULONG,
        /// `DelayVariation`.
        pub DelayVariation: ULONG,
        /// `ServiceType`.
        pub ServiceType: SERVICETYPE,
        /// `MaxSduSize`.
        pub MaxSduSize: ULONG,
        /// `MinimumPolicedSize`.
        pub MinimumPolicedSize: ULONG,
    }

    /// `QOS` — the QoS of a connection (`WSPConnect`, `WSPGetQOSByName`, the accept
    /// condition function).
    pub struct QOS {
        /// `SendingFlowspec`.
        pub SendingFlowspec: FLOWSPEC,
        /// `ReceivingFlowspec`.
        pub ReceivingFlowspec: FLOWSPEC,
        /// `ProviderSpecific` — provider-specific QoS data.
        pub ProviderSpecific: WSABUF,
    }

    /// `WSABUF` — one buffer of a scatter/gather list (`WSPSend`, `WSPRecv`, …).
    pub struct WSABUF {
        /// `len` — the buffer's length in bytes.
        pub len: u_long,
        /// `buf` — the buffer.
        pub buf: *mut CHAR,
    }

    /// `WSABUFEX` (`ddk/ws2san.h`) — a registered buffer of `WSPRdmaWrite`/`WSPRdmaRead`.
    pub struct WSABUFEX {
        /// `len` — the buffer's length in bytes.
        pub len: u_long,
        /// `buf` — the buffer.
        pub buf: *mut CHAR,
        /// `handle` — what `WSPRegisterMemory` returned for the region holding it.
        pub handle: HANDLE,
    }

    /// The unnamed struct inside [`WSAOVERLAPPED_0`] (`OVERLAPPED`'s `DUMMYSTRUCTNAME`).
    pub struct WSAOVERLAPPED_0_0 as anonymous {
        /// `Offset` — a SAN provider stores the result flags here.
        pub Offset: DWORD,
        /// `OffsetHigh` — a SAN provider stores the Winsock error code here.
        pub OffsetHigh: DWORD,
    }

    /// The unnamed union of [`WSAOVERLAPPED`] (`OVERLAPPED`'s `DUMMYUNIONNAME`).
    pub union WSAOVERLAPPED_0 as anonymous {
        /// `Offset` and `OffsetHigh`.
        pub Anonymous: WSAOVERLAPPED_0_0,
        /// `Pointer`.
        pub Pointer: PVOID,
    }

    /// `WSAOVERLAPPED` — `OVERLAPPED` (`minwinbase.h`; `winsock2.h` defines one as the other).
    pub struct WSAOVERLAPPED {
        /// `Internal` — `WSS_OPERATION_IN_PROGRESS` while the request is pending.
        pub Internal: ULONG_PTR,
        /// `InternalHigh` — bytes transferred, written at completion.
        pub InternalHigh: ULONG_PTR,
        /// The unnamed union holding `Offset`/`OffsetHigh` or `Pointer`.
        pub Anonymous: WSAOVERLAPPED_0,
        /// `hEvent` — the caller's event; low bit set: the switch polls, no notification.
        pub hEvent: HANDLE,
    }

    /// `WSANETWORKEVENTS` — what `WSPEnumNetworkEvents` reports.
    pub struct WSANETWORKEVENTS {
        /// `lNetworkEvents` — the `FD_*` bits that occurred.
        pub lNetworkEvents: LONG,
        /// `iErrorCode` — the error of each event, indexed by `FD_*_BIT`.
        pub iErrorCode: [INT; FD_MAX_EVENTS],
    }

    /// `WSAPROTOCOLCHAIN` — the layering of a catalog entry.
    pub struct WSAPROTOCOLCHAIN {
        /// `ChainLen` — 1 for a base provider, 0 for a layered one, more for a chain.
        pub ChainLen: INT,
        /// `ChainEntries` — catalog entry ids.
        pub ChainEntries: [DWORD; MAX_PROTOCOL_CHAIN],
    }

    /// `WSAPROTOCOL_INFOW` — a Winsock catalog entry (`WSPStartupEx` receives the TCP/IP
    /// provider's; `WSPDuplicateSocket` fills one).
    pub struct WSAPROTOCOL_INFOW {
        /// `dwServiceFlags1` — `XP1_*`.
        pub dwServiceFlags1: DWORD,
        /// `dwServiceFlags2` — reserved.
        pub dwServiceFlags2: DWORD,
        /// `dwServiceFlags3` — reserved.
        pub dwServiceFlags3: DWORD,
        /// `dwServiceFlags4` — reserved.
        pub dwServiceFlags4: DWORD,
        /// `dwProviderFlags` — `PFL_*`.
        pub dwProviderFlags: DWORD,
        /// `ProviderId`.
        pub ProviderId: GUID,
        /// `dwCatalogEntryId`.
        pub dwCatalogEntryId: DWORD,
        /// `ProtocolChain`.
        pub ProtocolChain: WSAPROTOCOLCHAIN,
        /// `iVersion`.
        pub iVersion: INT,
        /// `iAddressFamily`.
        pub iAddressFamily: INT,
        /// `iMaxSockAddr`.
        pub iMaxSockAddr: INT,
        /// `iMinSockAddr`.
        pub iMinSockAddr: INT,
        /// `iSocketType`.
        pub iSocketType: INT,
        /// `iProtocol`.
        pub iProtocol: INT,
        /// `iProtocolMaxOffset`.
        pub iProtocolMaxOffset: INT,
        /// `iNetworkByteOrder`.
        pub iNetworkByteOrder: INT,
        /// `iSecurityScheme`.
        pub iSecurityScheme: INT,
        /// `dwMessageSize`.
        pub dwMessageSize: DWORD,
        /// `dwProviderReserved` — for a SAN provider, the duplicated socket's identity.
        pub dwProviderReserved: DWORD,
        /// `szProtocol` — the NUL-terminated protocol name.
        pub szProtocol: [WCHAR; WSAPROTOCOL_LEN + 1],
    }

    /// `WSPDATA` — what `WSPStartupEx` reports about the provider.
    pub struct WSPDATA {
        /// `wVersion` — the SPI version the switch is to use.
        pub wVersion: WORD,
        /// `wHighVersion` — the highest SPI version the provider supports.
        pub wHighVersion: WORD,
        /// `szDescription` — NUL-terminated.
        pub szDescription: [WCHAR; WSPDESCRIPTION_LEN + 1],
    }

    /// `WSATHREADID` — the thread an APC is queued to.
    pub struct WSATHREADID {
        /// `ThreadHandle`.
        pub ThreadHandle: HANDLE,
        /// `Reserved`.
        pub Reserved: DWORD_PTR,
    }

    /// `WSPPROC_TABLE` (`ws2spi.h`) — the 30 provider entry points, in header order, that
    /// `WSPStartupEx` fills. A SAN provider fills 17 and leaves 13 NULL: the switch never
    /// calls those (see each slot).
    pub struct WSPPROC_TABLE {
        /// Slot 0, `lpWSPAccept` — filled.
        pub lpWSPAccept: LPWSPACCEPT,
        /// Slot 1, `lpWSPAddressToString` — NULL for a SAN provider.
        pub lpWSPAddressToString: LPWSPADDRESSTOSTRING,
        /// Slot 2, `lpWSPAsyncSelect` — NULL for a SAN provider.
        pub lpWSPAsyncSelect: LPWSPASYNCSELECT,
        /// Slot 3, `lpWSPBind` — filled.
        pub lpWSPBind: LPWSPBIND,
        /// Slot 4, `lpWSPCancelBlockingCall` — NULL for a SAN provider.
        pub lpWSPCancelBlockingCall: LPWSPCANCELBLOCKINGCALL,
        /// Slot 5, `lpWSPCleanup` — filled.
        pub lpWSPCleanup: LPWSPCLEANUP,
        /// Slot 6, `lpWSPCloseSocket` — filled.
        pub lpWSPCloseSocket: LPWSPCLOSESOCKET,
        /// Slot 7, `lpWSPConnect` — filled.
        pub lpWSPConnect: LPWSPCONNECT,
        /// Slot 8, `lpWSPDuplicateSocket` — filled.
        pub lpWSPDuplicateSocket: LPWSPDUPLICATESOCKET,
        /// Slot 9, `lpWSPEnumNetworkEvents` — filled.
        pub lpWSPEnumNetworkEvents: LPWSPENUMNETWORKEVENTS,
        /// Slot 10, `lpWSPEventSelect` — filled.
        pub lpWSPEventSelect: LPWSPEVENTSELECT,
        /// Slot 11, `lpWSPGetOverlappedResult` — filled.
        pub lpWSPGetOverlappedResult: LPWSPGETOVERLAPPEDRESULT,
        /// Slot 12, `lpWSPGetPeerName` — NULL for a SAN provider.
        pub lpWSPGetPeerName: LPWSPGETPEERNAME,
        /// Slot 13, `lpWSPGetSockName` — NULL for a SAN provider.
        pub lpWSPGetSockName: LPWSPGETSOCKNAME,
        /// Slot 14, `lpWSPGetSockOpt` — filled.
        pub lpWSPGetSockOpt: LPWSPGETSOCKOPT,
        /// Slot 15, `lpWSPGetQOSByName` — filled.
        pub lpWSPGetQOSByName: LPWSPGETQOSBYNAME,
        /// Slot 16, `lpWSPIoctl` — filled.
        pub lpWSPIoctl: LPWSPIOCTL,
        /// Slot 17, `lpWSPJoinLeaf` — NULL for a SAN provider.
        pub lpWSPJoinLeaf: LPWSPJOINLEAF,
        /// Slot 18, `lpWSPListen` — filled.
        pub lpWSPListen: LPWSPLISTEN,
        /// Slot 19, `lpWSPRecv` — filled.
        pub lpWSPRecv: LPWSPRECV,
        /// Slot 20, `lpWSPRecvDisconnect` — NULL for a SAN provider.
        pub lpWSPRecvDisconnect: LPWSPRECVDISCONNECT,
        /// Slot 21, `lpWSPRecvFrom` — NULL for a SAN provider.
        pub lpWSPRecvFrom: LPWSPRECVFROM,
        /// Slot 22, `lpWSPSelect` — NULL for a SAN provider.
        pub lpWSPSelect: LPWSPSELECT,
        /// Slot 23, `lpWSPSend` — filled.
        pub lpWSPSend: LPWSPSEND,
        /// Slot 24, `lpWSPSendDisconnect` — NULL for a SAN provider.
        pub lpWSPSendDisconnect: LPWSPSENDDISCONNECT,
        /// Slot 25, `lpWSPSendTo` — NULL for a SAN provider.
        pub lpWSPSendTo: LPWSPSENDTO,
        /// Slot 26, `lpWSPSetSockOpt` — filled.
        pub lpWSPSetSockOpt: LPWSPSETSOCKOPT,
        /// Slot 27, `lpWSPShutdown` — NULL for a SAN provider.
        pub lpWSPShutdown: LPWSPSHUTDOWN,
        /// Slot 28, `lpWSPSocket` — filled.
        pub lpWSPSocket: LPWSPSOCKET,
        /// Slot 29, `lpWSPStringToAddress` — NULL for a SAN provider.
        pub lpWSPStringToAddress: LPWSPSTRINGTOADDRESS,
    }

    /// `WSPUPCALLTABLEEX` (`ddk/ws2san.h`) — the switch's 16 upcalls, in header order,
    /// passed by pointer to `WSPStartupEx`: `WSPUPCALLTABLE`'s 15 and
    /// `lpWPUCompleteOverlappedRequest`.
    pub struct WSPUPCALLTABLEEX {
        /// Slot 0, `lpWPUCloseEvent`.
        pub lpWPUCloseEvent: LPWPUCLOSEEVENT,
        /// Slot 1, `lpWPUCloseSocketHandle` — the last upcall for a closed socket.
        pub lpWPUCloseSocketHandle: LPWPUCLOSESOCKETHANDLE,
        /// Slot 2, `lpWPUCreateEvent`.
        pub lpWPUCreateEvent: LPWPUCREATEEVENT,
        /// Slot 3, `lpWPUCreateSocketHandle` — the switch handle of a new socket.
        pub lpWPUCreateSocketHandle: LPWPUCREATESOCKETHANDLE,
        /// Slot 4, `lpWPUFDIsSet`.
        pub lpWPUFDIsSet: LPWPUFDISSET,
        /// Slot 5, `lpWPUGetProviderPath`.
        pub lpWPUGetProviderPath: LPWPUGETPROVIDERPATH,
        /// Slot 6, `lpWPUModifyIFSHandle`.
        pub lpWPUModifyIFSHandle: LPWPUMODIFYIFSHANDLE,
        /// Slot 7, `lpWPUPostMessage`.
        pub lpWPUPostMessage: LPWPUPOSTMESSAGE,
        /// Slot 8, `lpWPUQueryBlockingCallback`.
        pub lpWPUQueryBlockingCallback: LPWPUQUERYBLOCKINGCALLBACK,
        /// Slot 9, `lpWPUQuerySocketHandleContext`.
        pub lpWPUQuerySocketHandleContext: LPWPUQUERYSOCKETHANDLECONTEXT,
        /// Slot 10, `lpWPUQueueApc`.
        pub lpWPUQueueApc: LPWPUQUEUEAPC,
        /// Slot 11, `lpWPUResetEvent`.
        pub lpWPUResetEvent: LPWPURESETEVENT,
        /// Slot 12, `lpWPUSetEvent`.
        pub lpWPUSetEvent: LPWPUSETEVENT,
        /// Slot 13, `lpWPUOpenCurrentThread`.
        pub lpWPUOpenCurrentThread: LPWPUOPENCURRENTTHREAD,
        /// Slot 14, `lpWPUCloseThread`.
        pub lpWPUCloseThread: LPWPUCLOSETHREAD,
        /// Slot 15, `lpWPUCompleteOverlappedRequest` — completes an overlapped request.
        pub lpWPUCompleteOverlappedRequest: LPWPUCOMPLETEOVERLAPPEDREQUEST,
    }
}

/// The number of slots of [`WSPPROC_TABLE`].
pub const WSPPROC_TABLE_SLOTS: usize = 30;
/// The number of slots of [`WSPUPCALLTABLEEX`].
pub const WSPUPCALLTABLEEX_SLOTS: usize = 16;

const _: () = assert!(WSPPROC_TABLE::RECORD.fields.len() == WSPPROC_TABLE_SLOTS);
const _: () = assert!(WSPUPCALLTABLEEX::RECORD.fields.len() == WSPUPCALLTABLEEX_SLOTS);
const _: () = assert!(
    core::mem::size_of::<WSPPROC_TABLE>() == WSPPROC_TABLE_SLOTS * core::mem::size_of::<usize>()
);
const _: () = assert!(
    core::mem::size_of::<WSPUPCALLTABLEEX>()
        == WSPUPCALLTABLEEX_SLOTS * core::mem::size_of::<usize>()
);
