//! The error model of DESIGN.md §4: every failure is a `tonic::Status` with
//! the gRPC code that fits and a `google.rpc.ErrorInfo` detail whose
//! `reason` is libvirt's error name and whose `domain` is libvirt's error
//! domain; the message is libvirt's wording.

use std::collections::HashMap;
use std::fmt;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

macro_rules! error_codes {
    ($($variant:ident = $num:literal, $name:literal, $grpc:ident;)*) => {
        /// libvirt's `virErrorNumber`, with its numbers and names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// libvirt's name, e.g. `VIR_ERR_NO_DOMAIN`.
            pub fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }
            /// libvirt's number for it.
            pub fn number(self) -> i32 {
                match self { $(ErrorCode::$variant => $num,)* }
            }
            /// The gRPC status code a client sees.
            pub fn grpc_code(self) -> Code {
                match self { $(ErrorCode::$variant => Code::$grpc,)* }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    InternalError = 1, "VIR_ERR_INTERNAL_ERROR", Internal;
    NoSupport = 3, "VIR_ERR_NO_SUPPORT", Unimplemented;
    NoConnect = 5, "VIR_ERR_NO_CONNECT", Unavailable;
    InvalidConn = 6, "VIR_ERR_INVALID_CONN", InvalidArgument;
    InvalidArg = 8, "VIR_ERR_INVALID_ARG", InvalidArgument;
    OperationFailed = 9, "VIR_ERR_OPERATION_FAILED", FailedPrecondition;
    OsType = 16, "VIR_ERR_OS_TYPE", InvalidArgument;
    NoSource = 19, "VIR_ERR_NO_SOURCE", InvalidArgument;
    NoTarget = 20, "VIR_ERR_NO_TARGET", InvalidArgument;
    NoName = 21, "VIR_ERR_NO_NAME", InvalidArgument;
    NoOs = 22, "VIR_ERR_NO_OS", InvalidArgument;
    NoDevice = 23, "VIR_ERR_NO_DEVICE", InvalidArgument;
    XmlError = 27, "VIR_ERR_XML_ERROR", InvalidArgument;
    DomExist = 28, "VIR_ERR_DOM_EXIST", AlreadyExists;
    OperationDenied = 29, "VIR_ERR_OPERATION_DENIED", PermissionDenied;
    OpenFailed = 30, "VIR_ERR_OPEN_FAILED", Unavailable;
    ReadFailed = 31, "VIR_ERR_READ_FAILED", Internal;
    ParseFailed = 32, "VIR_ERR_PARSE_FAILED", InvalidArgument;
    ConfSyntax = 33, "VIR_ERR_CONF_SYNTAX", InvalidArgument;
    WriteFailed = 34, "VIR_ERR_WRITE_FAILED", Internal;
    XmlDetail = 35, "VIR_ERR_XML_DETAIL", InvalidArgument;
    InvalidNetwork = 36, "VIR_ERR_INVALID_NETWORK", InvalidArgument;
    NetworkExist = 37, "VIR_ERR_NETWORK_EXIST", AlreadyExists;
    SystemError = 38, "VIR_ERR_SYSTEM_ERROR", Internal;
    Rpc = 39, "VIR_ERR_RPC", Unavailable;
    NoDomain = 42, "VIR_ERR_NO_DOMAIN", NotFound;
    NoNetwork = 43, "VIR_ERR_NO_NETWORK", NotFound;
    InvalidMac = 44, "VIR_ERR_INVALID_MAC", InvalidArgument;
    AuthFailed = 45, "VIR_ERR_AUTH_FAILED", Unauthenticated;
    InvalidStoragePool = 46, "VIR_ERR_INVALID_STORAGE_POOL", InvalidArgument;
    InvalidStorageVol = 47, "VIR_ERR_INVALID_STORAGE_VOL", InvalidArgument;
    NoStoragePool = 49, "VIR_ERR_NO_STORAGE_POOL", NotFound;
    NoStorageVol = 50, "VIR_ERR_NO_STORAGE_VOL", NotFound;
    InvalidNodeDevice = 52, "VIR_ERR_INVALID_NODE_DEVICE", InvalidArgument;
    NoNodeDevice = 53, "VIR_ERR_NO_NODE_DEVICE", NotFound;
    NoSecurityModel = 54, "VIR_ERR_NO_SECURITY_MODEL", NotFound;
    OperationInvalid = 55, "VIR_ERR_OPERATION_INVALID", FailedPrecondition;
    NoInterface = 57, "VIR_ERR_NO_INTERFACE", NotFound;
    InvalidInterface = 58, "VIR_ERR_INVALID_INTERFACE", InvalidArgument;
    MultipleInterfaces = 59, "VIR_ERR_MULTIPLE_INTERFACES", FailedPrecondition;
    InvalidNwfilter = 61, "VIR_ERR_INVALID_NWFILTER", InvalidArgument;
    NoNwfilter = 62, "VIR_ERR_NO_NWFILTER", NotFound;
    BuildFirewall = 63, "VIR_ERR_BUILD_FIREWALL", Internal;
    InvalidSecret = 65, "VIR_ERR_INVALID_SECRET", InvalidArgument;
    NoSecret = 66, "VIR_ERR_NO_SECRET", NotFound;
    ConfigUnsupported = 67, "VIR_ERR_CONFIG_UNSUPPORTED", InvalidArgument;
    OperationTimeout = 68, "VIR_ERR_OPERATION_TIMEOUT", DeadlineExceeded;
    InvalidDomainSnapshot = 71, "VIR_ERR_INVALID_DOMAIN_SNAPSHOT", InvalidArgument;
    NoDomainSnapshot = 72, "VIR_ERR_NO_DOMAIN_SNAPSHOT", NotFound;
    InvalidStream = 73, "VIR_ERR_INVALID_STREAM", InvalidArgument;
    ArgumentUnsupported = 74, "VIR_ERR_ARGUMENT_UNSUPPORTED", InvalidArgument;
    StoragePoolBuilt = 76, "VIR_ERR_STORAGE_POOL_BUILT", FailedPrecondition;
    OperationAborted = 78, "VIR_ERR_OPERATION_ABORTED", Aborted;
    NoDomainMetadata = 80, "VIR_ERR_NO_DOMAIN_METADATA", NotFound;
    Overflow = 82, "VIR_ERR_OVERFLOW", OutOfRange;
    OperationUnsupported = 84, "VIR_ERR_OPERATION_UNSUPPORTED", Unimplemented;
    ResourceBusy = 87, "VIR_ERR_RESOURCE_BUSY", Unavailable;
    AccessDenied = 88, "VIR_ERR_ACCESS_DENIED", PermissionDenied;
    StorageVolExist = 90, "VIR_ERR_STORAGE_VOL_EXIST", AlreadyExists;
    CpuIncompatible = 91, "VIR_ERR_CPU_INCOMPATIBLE", FailedPrecondition;
    XmlInvalidSchema = 92, "VIR_ERR_XML_INVALID_SCHEMA", InvalidArgument;
    DeviceMissing = 99, "VIR_ERR_DEVICE_MISSING", NotFound;
    InvalidNwfilterBinding = 100, "VIR_ERR_INVALID_NWFILTER_BINDING", InvalidArgument;
    NoNwfilterBinding = 101, "VIR_ERR_NO_NWFILTER_BINDING", NotFound;
    InvalidNetworkPort = 105, "VIR_ERR_INVALID_NETWORK_PORT", InvalidArgument;
    NetworkPortExist = 106, "VIR_ERR_NETWORK_PORT_EXIST", AlreadyExists;
    NoNetworkPort = 107, "VIR_ERR_NO_NETWORK_PORT", NotFound;
    NoHostname = 108, "VIR_ERR_NO_HOSTNAME", NotFound;
    MultipleDomains = 110, "VIR_ERR_MULTIPLE_DOMAINS", FailedPrecondition;
    NoNetworkMetadata = 111, "VIR_ERR_NO_NETWORK_METADATA", NotFound;
}

macro_rules! error_domains {
    ($($variant:ident = $num:literal, $name:literal;)*) => {
        /// libvirt's `virErrorDomain`: which part of libvirt raised the error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorDomain { $($variant,)* }

        impl ErrorDomain {
            pub fn name(self) -> &'static str {
                match self { $(ErrorDomain::$variant => $name,)* }
            }
            pub fn number(self) -> i32 {
                match self { $(ErrorDomain::$variant => $num,)* }
            }
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(ErrorDomain::$variant),)* _ => None }
            }
        }
    };
}

error_domains! {
    None = 0, "VIR_FROM_NONE";
    Xml = 5, "VIR_FROM_XML";
    Dom = 6, "VIR_FROM_DOM";
    Rpc = 7, "VIR_FROM_RPC";
    Conf = 9, "VIR_FROM_CONF";
    Qemu = 10, "VIR_FROM_QEMU";
    Net = 11, "VIR_FROM_NET";
    Test = 12, "VIR_FROM_TEST";
    Remote = 13, "VIR_FROM_REMOTE";
    Lxc = 17, "VIR_FROM_LXC";
    Storage = 18, "VIR_FROM_STORAGE";
    Network = 19, "VIR_FROM_NETWORK";
    Domain = 20, "VIR_FROM_DOMAIN";
    Nodedev = 22, "VIR_FROM_NODEDEV";
    Security = 24, "VIR_FROM_SECURITY";
    Interface = 26, "VIR_FROM_INTERFACE";
    Secret = 30, "VIR_FROM_SECRET";
    Cpu = 31, "VIR_FROM_CPU";
    Nwfilter = 33, "VIR_FROM_NWFILTER";
    DomainSnapshot = 35, "VIR_FROM_DOMAIN_SNAPSHOT";
    Streams = 38, "VIR_FROM_STREAMS";
    Event = 40, "VIR_FROM_EVENT";
    Capabilities = 44, "VIR_FROM_CAPABILITIES";
    Uri = 45, "VIR_FROM_URI";
    Device = 49, "VIR_FROM_DEVICE";
    Access = 55, "VIR_FROM_ACCESS";
    Firewall = 59, "VIR_FROM_FIREWALL";
}

/// A libvirt error: code, domain and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtError {
    pub code: ErrorCode,
    pub domain: ErrorDomain,
    pub message: String,
}

impl VirtError {
    pub fn new(code: ErrorCode, domain: ErrorDomain, message: impl Into<String>) -> Self {
        VirtError {
            code,
            domain,
            message: message.into(),
        }
    }

    /// A call this driver does not implement (yet): UNIMPLEMENTED naming the
    /// driver and the call, with libvirt's VIR_ERR_NO_SUPPORT.
    pub fn unimplemented(driver: &str, call: &str, domain: ErrorDomain) -> Self {
        VirtError::new(
            ErrorCode::NoSupport,
            domain,
            format!(
                "this function is not supported by the connection driver: {call} is not implemented by the {driver} driver"
            ),
        )
    }

    /// The client-side view of a status received from a peer or gateway.
    /// Statuses without our detail (transport errors) map to VIR_ERR_RPC.
    pub fn from_status(status: &tonic::Status) -> Self {
        if let Some(info) = status.get_details_error_info()
            && let (Some(code), Some(domain)) = (
                ErrorCode::from_name(&info.reason),
                ErrorDomain::from_name(&info.domain),
            )
        {
            return VirtError::new(code, domain, status.message());
        }
        let code = match status.code() {
            Code::Unimplemented => ErrorCode::NoSupport,
            Code::InvalidArgument => ErrorCode::InvalidArg,
            Code::NotFound => ErrorCode::OperationFailed,
            _ => ErrorCode::Rpc,
        };
        VirtError::new(code, ErrorDomain::Rpc, status.message())
    }
}

impl fmt::Display for VirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for VirtError {}

impl From<VirtError> for tonic::Status {
    fn from(e: VirtError) -> Self {
        let mut metadata = HashMap::new();
        metadata.insert("code".to_owned(), e.code.number().to_string());
        metadata.insert("domain_number".to_owned(), e.domain.number().to_string());
        let details = ErrorDetails::with_error_info(e.code.name(), e.domain.name(), metadata);
        tonic::Status::with_error_details(e.code.grpc_code(), e.message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_libvirt_names() {
        let err = VirtError::new(
            ErrorCode::NoDomain,
            ErrorDomain::Test,
            "Domain not found: no domain with matching name 'x'",
        );
        let status = tonic::Status::from(err.clone());
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(VirtError::from_status(&status), err);
    }

    #[test]
    fn foreign_status_becomes_rpc_error() {
        let status = tonic::Status::unavailable("connection refused");
        let err = VirtError::from_status(&status);
        assert_eq!(err.code, ErrorCode::Rpc);
        assert_eq!(err.message, "connection refused");
    }
}
