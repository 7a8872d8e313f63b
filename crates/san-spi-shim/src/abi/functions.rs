//! The function pointer types of the SPI, parameter for parameter as in `winsock2.h`,
//! `ws2spi.h` and `ddk/ws2san.h` (mingw-w64), under the headers' typedef names. All are
//! `WSPAPI`/`CALLBACK`, i.e. `__stdcall` on x86: `extern "system"` here. Each is an
//! `Option` so that NULL is [`None`].

use super::*;

c_fn_types! {
    /// Every function pointer type above, for the probe.
    pub(crate) const FN_TYPES;

    /// `LPCONDITIONPROC` — the accept condition function the switch passes to
    /// `WSPAccept`; returns [`CF_ACCEPT`], [`CF_REJECT`] or [`CF_DEFER`]. A SAN provider
    /// calls it on the accepting thread before `WSPAccept` returns.
    pub type LPCONDITIONPROC = fn(
        lpCallerId: LPWSABUF,
        lpCallerData: LPWSABUF,
        lpSQOS: LPQOS,
        lpGQOS: LPQOS,
        lpCalleeId: LPWSABUF,
        lpCalleeData: LPWSABUF,
        g: *mut GROUP,
        dwCallbackData: DWORD_PTR,
    ) -> INT;

    /// `LPWSAOVERLAPPED_COMPLETION_ROUTINE` — an application's completion routine; the
    /// switch always passes NULL to a SAN provider.
    pub type LPWSAOVERLAPPED_COMPLETION_ROUTINE = fn(
        dwError: DWORD,
        cbTransferred: DWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        dwFlags: DWORD,
    );

    /// `LPBLOCKINGCALLBACK` — what `WPUQueryBlockingCallback` returns.
    pub type LPBLOCKINGCALLBACK = fn(dwContext: DWORD_PTR) -> BOOL;

    /// `LPWSAUSERAPC` — an APC queued by `WPUQueueApc`.
    pub type LPWSAUSERAPC = fn(dwContext: DWORD_PTR);

    /// `LPWSPACCEPT` — `WSPAccept`.
    pub type LPWSPACCEPT = fn(
        s: SOCKET,
        addr: *mut SOCKADDR,
        addrlen: LPINT,
        lpfnCondition: LPCONDITIONPROC,
        dwCallbackData: DWORD_PTR,
        lpErrno: LPINT,
    ) -> SOCKET;

    /// `LPWSPADDRESSTOSTRING` — `WSPAddressToString`.
    pub type LPWSPADDRESSTOSTRING = fn(
        lpsaAddress: LPSOCKADDR,
        dwAddressLength: DWORD,
        lpProtocolInfo: LPWSAPROTOCOL_INFOW,
        lpszAddressString: LPWSTR,
        lpdwAddressStringLength: LPDWORD,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPASYNCSELECT` — `WSPAsyncSelect`.
    pub type LPWSPASYNCSELECT = fn(
        s: SOCKET,
        hWnd: HWND,
        wMsg: UINT,
        lEvent: LONG,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPBIND` — `WSPBind`.
    pub type LPWSPBIND = fn(s: SOCKET, name: *const SOCKADDR, namelen: INT, lpErrno: LPINT) -> INT;

    /// `LPWSPCANCELBLOCKINGCALL` — `WSPCancelBlockingCall`.
    pub type LPWSPCANCELBLOCKINGCALL = fn(lpErrno: LPINT) -> INT;

    /// `LPWSPCLEANUP` — `WSPCleanup`.
    pub type LPWSPCLEANUP = fn(lpErrno: LPINT) -> INT;

    /// `LPWSPCLOSESOCKET` — `WSPCloseSocket`.
    pub type LPWSPCLOSESOCKET = fn(s: SOCKET, lpErrno: LPINT) -> INT;

    /// `LPWSPCONNECT` — `WSPConnect`.
    pub type LPWSPCONNECT = fn(
        s: SOCKET,
        name: *const SOCKADDR,
        namelen: INT,
        lpCallerData: LPWSABUF,
        lpCalleeData: LPWSABUF,
        lpSQOS: LPQOS,
        lpGQOS: LPQOS,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPDUPLICATESOCKET` — `WSPDuplicateSocket`.
    pub type LPWSPDUPLICATESOCKET = fn(
        s: SOCKET,
        dwProcessId: DWORD,
        lpProtocolInfo: LPWSAPROTOCOL_INFOW,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPENUMNETWORKEVENTS` — `WSPEnumNetworkEvents`.
    pub type LPWSPENUMNETWORKEVENTS = fn(
        s: SOCKET,
        hEventObject: WSAEVENT,
        lpNetworkEvents: LPWSANETWORKEVENTS,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPEVENTSELECT` — `WSPEventSelect`.
    pub type LPWSPEVENTSELECT = fn(
        s: SOCKET,
        hEventObject: WSAEVENT,
        lNetworkEvents: LONG,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPGETOVERLAPPEDRESULT` — `WSPGetOverlappedResult`; returns a `BOOL`.
    pub type LPWSPGETOVERLAPPEDRESULT = fn(
        s: SOCKET,
        lpOverlapped: LPWSAOVERLAPPED,
        lpcbTransfer: LPDWORD,
        fWait: BOOL,
        lpdwFlags: LPDWORD,
        lpErrno: LPINT,
    ) -> BOOL;

    /// `LPWSPGETPEERNAME` — `WSPGetPeerName`.
    pub type LPWSPGETPEERNAME = fn(
        s: SOCKET,
        name: *mut SOCKADDR,
        namelen: LPINT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPGETSOCKNAME` — `WSPGetSockName`.
    pub type LPWSPGETSOCKNAME = fn(
        s: SOCKET,
        name: *mut SOCKADDR,
        namelen: LPINT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPGETSOCKOPT` — `WSPGetSockOpt`.
    pub type LPWSPGETSOCKOPT = fn(
        s: SOCKET,
        level: INT,
        optname: INT,
        optval: *mut CHAR,
        optlen: LPINT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPGETQOSBYNAME` — `WSPGetQOSByName`; returns a `BOOL`.
    pub type LPWSPGETQOSBYNAME = fn(
        s: SOCKET,
        lpQOSName: LPWSABUF,
        lpQOS: LPQOS,
        lpErrno: LPINT,
    ) -> BOOL;

    /// `LPWSPIOCTL` — `WSPIoctl`.
    pub type LPWSPIOCTL = fn(
        s: SOCKET,
        dwIoControlCode: DWORD,
        lpvInBuffer: LPVOID,
        cbInBuffer: DWORD,
        lpvOutBuffer: LPVOID,
        cbOutBuffer: DWORD,
        lpcbBytesReturned: LPDWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPJOINLEAF` — `WSPJoinLeaf`.
    pub type LPWSPJOINLEAF = fn(
        s: SOCKET,
        name: *const SOCKADDR,
        namelen: INT,
        lpCallerData: LPWSABUF,
        lpCalleeData: LPWSABUF,
        lpSQOS: LPQOS,
        lpGQOS: LPQOS,
        dwFlags: DWORD,
        lpErrno: LPINT,
    ) -> SOCKET;

    /// `LPWSPLISTEN` — `WSPListen`.
    pub type LPWSPLISTEN = fn(s: SOCKET, backlog: INT, lpErrno: LPINT) -> INT;

    /// `LPWSPRECV` — `WSPRecv`.
    pub type LPWSPRECV = fn(
        s: SOCKET,
        lpBuffers: LPWSABUF,
        dwBufferCount: DWORD,
        lpNumberOfBytesRecvd: LPDWORD,
        lpFlags: LPDWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPRECVDISCONNECT` — `WSPRecvDisconnect`.
    pub type LPWSPRECVDISCONNECT = fn(
        s: SOCKET,
        lpInboundDisconnectData: LPWSABUF,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPRECVFROM` — `WSPRecvFrom`.
    pub type LPWSPRECVFROM = fn(
        s: SOCKET,
        lpBuffers: LPWSABUF,
        dwBufferCount: DWORD,
        lpNumberOfBytesRecvd: LPDWORD,
        lpFlags: LPDWORD,
        lpFrom: *mut SOCKADDR,
        lpFromlen: LPINT,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSELECT` — `WSPSelect` (the header's `const PTIMEVAL` is the same type: a
    /// top-level `const` on a parameter is not part of the function type).
    pub type LPWSPSELECT = fn(
        nfds: INT,
        readfds: *mut fd_set,
        writefds: *mut fd_set,
        exceptfds: *mut fd_set,
        timeout: PTIMEVAL,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSEND` — `WSPSend`.
    pub type LPWSPSEND = fn(
        s: SOCKET,
        lpBuffers: LPWSABUF,
        dwBufferCount: DWORD,
        lpNumberOfBytesSent: LPDWORD,
        dwFlags: DWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSENDDISCONNECT` — `WSPSendDisconnect`.
    pub type LPWSPSENDDISCONNECT = fn(
        s: SOCKET,
        lpOutboundDisconnectData: LPWSABUF,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSENDTO` — `WSPSendTo`.
    pub type LPWSPSENDTO = fn(
        s: SOCKET,
        lpBuffers: LPWSABUF,
        dwBufferCount: DWORD,
        lpNumberOfBytesSent: LPDWORD,
        dwFlags: DWORD,
        lpTo: *const SOCKADDR,
        iTolen: INT,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSETSOCKOPT` — `WSPSetSockOpt`.
    pub type LPWSPSETSOCKOPT = fn(
        s: SOCKET,
        level: INT,
        optname: INT,
        optval: *const CHAR,
        optlen: INT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSHUTDOWN` — `WSPShutdown`.
    pub type LPWSPSHUTDOWN = fn(s: SOCKET, how: INT, lpErrno: LPINT) -> INT;

    /// `LPWSPSOCKET` — `WSPSocket`.
    pub type LPWSPSOCKET = fn(
        af: INT,
        r#type: INT,
        protocol: INT,
        lpProtocolInfo: LPWSAPROTOCOL_INFOW,
        g: GROUP,
        dwFlags: DWORD,
        lpErrno: LPINT,
    ) -> SOCKET;

    /// `LPWSPSTRINGTOADDRESS` — `WSPStringToAddress`.
    pub type LPWSPSTRINGTOADDRESS = fn(
        AddressString: LPWSTR,
        AddressFamily: INT,
        lpProtocolInfo: LPWSAPROTOCOL_INFOW,
        lpAddress: LPSOCKADDR,
        lpAddressLength: LPINT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWPUCLOSEEVENT` — `WPUCloseEvent`.
    pub type LPWPUCLOSEEVENT = fn(hEvent: WSAEVENT, lpErrno: LPINT) -> BOOL;

    /// `LPWPUCLOSESOCKETHANDLE` — `WPUCloseSocketHandle`.
    pub type LPWPUCLOSESOCKETHANDLE = fn(s: SOCKET, lpErrno: LPINT) -> INT;

    /// `LPWPUCREATEEVENT` — `WPUCreateEvent`.
    pub type LPWPUCREATEEVENT = fn(lpErrno: LPINT) -> WSAEVENT;

    /// `LPWPUCREATESOCKETHANDLE` — `WPUCreateSocketHandle`.
    pub type LPWPUCREATESOCKETHANDLE = fn(
        dwCatalogEntryId: DWORD,
        dwContext: DWORD_PTR,
        lpErrno: LPINT,
    ) -> SOCKET;

    /// `LPWPUFDISSET` — `WPUFDIsSet`.
    pub type LPWPUFDISSET = fn(s: SOCKET, fdset: *mut fd_set) -> INT;

    /// `LPWPUGETPROVIDERPATH` — `WPUGetProviderPath`.
    pub type LPWPUGETPROVIDERPATH = fn(
        lpProviderId: LPGUID,
        lpszProviderDllPath: *mut WCHAR,
        lpProviderDllPathLen: LPINT,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWPUMODIFYIFSHANDLE` — `WPUModifyIFSHandle`.
    pub type LPWPUMODIFYIFSHANDLE = fn(
        dwCatalogEntryId: DWORD,
        ProposedHandle: SOCKET,
        lpErrno: LPINT,
    ) -> SOCKET;

    /// `LPWPUPOSTMESSAGE` — `WPUPostMessage`.
    pub type LPWPUPOSTMESSAGE = fn(hWnd: HWND, Msg: UINT, wParam: WPARAM, lParam: LPARAM) -> BOOL;

    /// `LPWPUQUERYBLOCKINGCALLBACK` — `WPUQueryBlockingCallback`.
    pub type LPWPUQUERYBLOCKINGCALLBACK = fn(
        dwCatalogEntryId: DWORD,
        lplpfnCallback: *mut LPBLOCKINGCALLBACK,
        lpdwContext: PDWORD_PTR,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWPUQUERYSOCKETHANDLECONTEXT` — `WPUQuerySocketHandleContext`.
    pub type LPWPUQUERYSOCKETHANDLECONTEXT = fn(
        s: SOCKET,
        lpContext: PDWORD_PTR,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWPUQUEUEAPC` — `WPUQueueApc`.
    pub type LPWPUQUEUEAPC = fn(
        lpThreadId: LPWSATHREADID,
        lpfnUserApc: LPWSAUSERAPC,
        dwContext: DWORD_PTR,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWPURESETEVENT` — `WPUResetEvent`.
    pub type LPWPURESETEVENT = fn(hEvent: WSAEVENT, lpErrno: LPINT) -> BOOL;

    /// `LPWPUSETEVENT` — `WPUSetEvent`.
    pub type LPWPUSETEVENT = fn(hEvent: WSAEVENT, lpErrno: LPINT) -> BOOL;

    /// `LPWPUOPENCURRENTTHREAD` — `WPUOpenCurrentThread`.
    pub type LPWPUOPENCURRENTTHREAD = fn(lpThreadId: LPWSATHREADID, lpErrno: LPINT) -> INT;

    /// `LPWPUCLOSETHREAD` — `WPUCloseThread`.
    pub type LPWPUCLOSETHREAD = fn(lpThreadId: LPWSATHREADID, lpErrno: LPINT) -> INT;

    /// `LPWPUCOMPLETEOVERLAPPEDREQUEST` — `WPUCompleteOverlappedRequest`.
    pub type LPWPUCOMPLETEOVERLAPPEDREQUEST = fn(
        s: SOCKET,
        lpOverlapped: LPWSAOVERLAPPED,
        dwError: DWORD,
        cbTransferred: DWORD,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPWSPSTARTUPEX` (`ddk/ws2san.h`) — `WSPStartupEx`, the one export of a SAN
    /// provider; it returns the error itself (no `lpErrno`).
    pub type LPWSPSTARTUPEX = fn(
        wVersionRequested: WORD,
        lpWSPData: LPWSPDATA,
        lpProtocolInfo: LPWSAPROTOCOL_INFOW,
        lpUpcallTable: LPWSPUPCALLTABLEEX,
        lpProcTable: LPWSPPROC_TABLE,
    ) -> INT;

    /// `LPFN_WSPREGISTERMEMORY` (`ddk/ws2san.h`) — `WSPRegisterMemory`; returns the
    /// registration handle, NULL on error.
    pub type LPFN_WSPREGISTERMEMORY = fn(
        s: SOCKET,
        lpBuffer: PVOID,
        dwBufferLength: DWORD,
        dwFlags: DWORD,
        lpErrno: LPINT,
    ) -> HANDLE;

    /// `LPFN_WSPDEREGISTERMEMORY` (`ddk/ws2san.h`) — `WSPDeregisterMemory`.
    pub type LPFN_WSPDEREGISTERMEMORY = fn(s: SOCKET, Handle: HANDLE, lpErrno: LPINT) -> INT;

    /// `LPFN_WSPREGISTERRDMAMEMORY` (`ddk/ws2san.h`) — `WSPRegisterRdmaMemory`.
    pub type LPFN_WSPREGISTERRDMAMEMORY = fn(
        s: SOCKET,
        lpBuffer: PVOID,
        dwBufferLength: DWORD,
        dwFlags: DWORD,
        lpRdmaBufferDescriptor: LPVOID,
        lpdwDescriptorLength: LPDWORD,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPFN_WSPDEREGISTERRDMAMEMORY` (`ddk/ws2san.h`) — `WSPDeregisterRdmaMemory`.
    pub type LPFN_WSPDEREGISTERRDMAMEMORY = fn(
        s: SOCKET,
        lpRdmaBufferDescriptor: LPVOID,
        dwDescriptorLength: DWORD,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPFN_WSPRDMAWRITE` (`ddk/ws2san.h`) — `WSPRdmaWrite`.
    pub type LPFN_WSPRDMAWRITE = fn(
        s: SOCKET,
        lpBuffers: LPWSABUFEX,
        dwBufferCount: DWORD,
        lpTargetBufferDescriptor: LPVOID,
        dwTargetDescriptorLength: DWORD,
        dwTargetBufferOffset: DWORD,
        lpdwNumberOfBytesWritten: LPDWORD,
        dwFlags: DWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPFN_WSPRDMAREAD` (`ddk/ws2san.h`) — `WSPRdmaRead`.
    pub type LPFN_WSPRDMAREAD = fn(
        s: SOCKET,
        lpBuffers: LPWSABUFEX,
        dwBufferCount: DWORD,
        lpTargetBufferDescriptor: LPVOID,
        dwTargetDescriptorLength: DWORD,
        dwTargetBufferOffset: DWORD,
        lpdwNumberOfBytesRead: LPDWORD,
        dwFlags: DWORD,
        lpOverlapped: LPWSAOVERLAPPED,
        lpCompletionRoutine: LPWSAOVERLAPPED_COMPLETION_ROUTINE,
        lpThreadId: LPWSATHREADID,
        lpErrno: LPINT,
    ) -> INT;

    /// `LPFN_WSPMEMORYREGISTRATIONCACHECALLBACK` (`ddk/ws2san.h`) —
    /// `WSPMemoryRegistrationCacheCallback`; no socket.
    pub type LPFN_WSPMEMORYREGISTRATIONCACHECALLBACK = fn(
        lpvAddress: PVOID,
        Size: SIZE_T,
        lpErrno: LPINT,
    ) -> INT;
}
