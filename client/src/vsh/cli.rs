//! vsh's command line: virsh's global options and commands, with virsh's
//! names. virsh lets every required argument be given positionally or as
//! `--name value`; [`obj_arg!`] builds that pair for each kind of argument.

use clap::{Args, Parser, Subcommand};
use virtmesh_rpc::ListenAddr;

/// Where the gateway is when `--gateway` is not given.
pub const DEFAULT_GATEWAY: &str = "127.0.0.1:16509";

impl Cli {
    /// `--gateway`, else `$VIRTMESH_GATEWAY` (an empty value counts as
    /// unset, so `VIRTMESH_GATEWAY=` restores the default), else
    /// [`DEFAULT_GATEWAY`].
    pub fn gateway_addr(&self, env: impl Fn(&str) -> Option<String>) -> Result<ListenAddr, String> {
        if let Some(gw) = &self.gateway {
            return Ok(gw.clone());
        }
        match env("VIRTMESH_GATEWAY").filter(|v| !v.is_empty()) {
            Some(v) => v
                .parse()
                .map_err(|e| format!("invalid $VIRTMESH_GATEWAY: {e}")),
            None => DEFAULT_GATEWAY
                .parse()
                .map_err(|e| format!("invalid default gateway: {e}")),
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "vsh",
    version,
    about = "virsh-compatible command line for virtmesh",
    long_about = "virsh-compatible command line for virtmesh.\n\n\
        The connection URI comes from -c/--connect, else $VIRTMESH_DEFAULT_URI, \
        else $LIBVIRT_DEFAULT_URI, else the gateway's default.\n\n\
        Without a command, vsh reads commands from its input (an interactive \
        shell on a terminal); a single argument is a command string in which \
        ';' separates commands."
)]
pub struct Cli {
    /// hypervisor connection URI
    #[arg(short = 'c', long = "connect", value_name = "URI")]
    pub connect: Option<String>,

    /// virtmesh gateway address: HOST:PORT or unix:PATH [default:
    /// $VIRTMESH_GATEWAY, else 127.0.0.1:16509]
    #[arg(long, value_name = "ADDR")]
    pub gateway: Option<ListenAddr>,

    /// quiet mode: no table headers, no informational messages
    #[arg(short = 'q', long)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// A required argument accepted both positionally and as `--<long> VALUE`.
macro_rules! obj_arg {
    ($name:ident, $long:literal, $pos:literal, $value:literal, $help:literal) => {
        #[derive(Debug, Clone, Args)]
        pub struct $name {
            #[arg(id = $pos, value_name = $value, help = $help, required_unless_present = $long)]
            pos: Option<String>,
            #[arg(id = $long, long = $long, value_name = $value, help = $help, conflicts_with = $pos)]
            opt: Option<String>,
        }

        impl $name {
            pub fn get(&self) -> &str {
                // clap enforces that one of the two is present.
                self.pos.as_deref().or(self.opt.as_deref()).unwrap_or_default()
            }
        }
    };
}

obj_arg!(PortArg, "port", "port_pos", "PORT", "port UUID");
obj_arg!(
    DomArg,
    "domain",
    "domain_pos",
    "DOMAIN",
    "domain name, id or uuid"
);
obj_arg!(
    FileArg,
    "file",
    "file_pos",
    "FILE",
    "file containing an XML description"
);
obj_arg!(
    NetArg,
    "network",
    "network_pos",
    "NETWORK",
    "network name or uuid"
);
obj_arg!(PoolArg, "pool", "pool_pos", "POOL", "pool name or uuid");
obj_arg!(VolArg, "vol", "vol_pos", "VOL", "vol name, key or path");
obj_arg!(
    IfaceArg,
    "interface",
    "interface_pos",
    "INTERFACE",
    "interface name or MAC address"
);
obj_arg!(
    SnapArg,
    "snapshotname",
    "snapshotname_pos",
    "SNAPSHOT",
    "snapshot name"
);
obj_arg!(DevArg, "device", "device_pos", "DEVICE", "device name");
obj_arg!(
    TypeArg,
    "type",
    "type_pos",
    "TYPE",
    "network interface type"
);
obj_arg!(
    IfSourceArg,
    "source",
    "source_pos",
    "SOURCE",
    "source of network interface"
);
obj_arg!(
    DiskSourceArg,
    "source",
    "source_pos",
    "SOURCE",
    "source of disk device or name of network disk"
);
obj_arg!(
    TargetArg,
    "target",
    "target_pos",
    "TARGET",
    "target of disk device"
);
obj_arg!(
    BindingArg,
    "binding",
    "binding_pos",
    "BINDING",
    "network filter binding port dev"
);
obj_arg!(SecretArg, "secret", "secret_pos", "SECRET", "secret UUID");
obj_arg!(
    StateArg,
    "state",
    "state_pos",
    "STATE",
    "new state of the device"
);
obj_arg!(
    SaveToArg,
    "file",
    "file_pos",
    "FILE",
    "where to save the data"
);
obj_arg!(
    RestoreFromArg,
    "file",
    "file_pos",
    "FILE",
    "the state to restore"
);
obj_arg!(
    PathArg,
    "path",
    "path_pos",
    "PATH",
    "Fully-qualified path or target of disk device"
);
obj_arg!(
    SizeArg,
    "size",
    "size_pos",
    "SIZE",
    "new memory size, as scaled integer (default KiB)"
);
obj_arg!(
    CountArg,
    "count",
    "count_pos",
    "COUNT",
    "number of virtual CPUs"
);
obj_arg!(
    NwfilterArg,
    "nwfilter",
    "nwfilter_pos",
    "NWFILTER",
    "network filter name or uuid"
);

/// Every vsh command. The commands live in one flattened enum per family:
/// clap's derive builds each enum's arguments in one function, and a single
/// enum of every command needs a stack frame of megabytes in debug builds.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Host(HostCmd),
    #[command(flatten)]
    Domain(DomainCmd),
    #[command(flatten)]
    Snapshot(SnapshotCmd),
    #[command(flatten)]
    Network(NetworkCmd),
    #[command(flatten)]
    Storage(StorageCmd),
    #[command(flatten)]
    Device(DeviceCmd),
    #[command(flatten)]
    Secret(SecretCmd),
    #[command(flatten)]
    Event(EventCmd),
}

/// Connection and host commands.
#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// print the hypervisor canonical URI
    Uri,
    /// show version
    Version,
    /// print the hypervisor hostname
    Hostname,
    /// capabilities
    Capabilities,
    /// node information
    Nodeinfo,
    /// print the hypervisor sysinfo
    Sysinfo,
    /// connection vcpu maximum
    Maxvcpus {
        /// domain type
        #[arg(long = "type", value_name = "TYPE")]
        r#type: Option<String>,
    },
    /// NUMA free memory (host total)
    Freecell,
    /// domain capabilities
    Domcapabilities {
        /// virtualization type (/domain/@type)
        #[arg(long, value_name = "TYPE")]
        virttype: Option<String>,
        /// path to emulator binary (/domain/devices/emulator)
        #[arg(long = "emulatorbin", alias = "emulator", value_name = "PATH")]
        emulator: Option<String>,
        /// domain architecture (/domain/os/type/@arch)
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
        /// machine type (/domain/os/type/@machine)
        #[arg(long, value_name = "MACHINE")]
        machine: Option<String>,
    },
    /// CPU models
    CpuModels {
        /// architecture
        #[arg(value_name = "ARCH")]
        arch: String,
    },
    /// compare host CPU with a CPU described by an XML file
    CpuCompare {
        #[command(flatten)]
        file: FileArg,
        /// report error if CPUs are incompatible
        #[arg(long)]
        error: bool,
    },
    /// compute baseline CPU
    CpuBaseline {
        #[command(flatten)]
        file: FileArg,
        /// Show features that are part of the CPU model type
        #[arg(long)]
        features: bool,
        /// Do not include features that block migration
        #[arg(long)]
        migratable: bool,
    },
    /// Convert native config to domain XML
    DomxmlFromNative {
        /// source config data format
        #[arg(value_name = "FORMAT")]
        format: String,
        /// config data file to import from
        #[arg(value_name = "CONFIG")]
        config: String,
    },
}

/// Domain commands.
#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// list domains
    List(ListArgs),
    /// domain information
    Dominfo(DomArg),
    /// domain state
    Domstate {
        #[command(flatten)]
        domain: DomArg,
        /// also print reason for the state
        #[arg(long)]
        reason: bool,
    },
    /// convert a domain name or UUID to domain id
    Domid(DomArg),
    /// convert a domain id or UUID to domain name
    Domname(DomArg),
    /// convert a domain name or id to domain UUID
    Domuuid(DomArg),
    /// define (but don't start) a domain from an XML file
    Define {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// create a domain from an XML file
    Create {
        #[command(flatten)]
        file: FileArg,
        /// leave the guest paused after creation
        #[arg(long)]
        paused: bool,
        /// automatically destroy the guest when vsh disconnects
        #[arg(long)]
        autodestroy: bool,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// undefine a domain
    Undefine {
        #[command(flatten)]
        domain: DomArg,
        /// remove domain managed state file
        #[arg(long)]
        managed_save: bool,
        /// remove all domain snapshot metadata (vm must be inactive)
        #[arg(long)]
        snapshots_metadata: bool,
        /// remove all domain checkpoint metadata (vm must be inactive)
        #[arg(long)]
        checkpoints_metadata: bool,
        /// remove nvram file
        #[arg(long)]
        nvram: bool,
        /// keep nvram file
        #[arg(long)]
        keep_nvram: bool,
        /// remove TPM state
        #[arg(long)]
        tpm: bool,
        /// keep TPM state
        #[arg(long)]
        keep_tpm: bool,
    },
    /// start a (previously defined) inactive domain
    Start {
        #[command(flatten)]
        domain: DomArg,
        /// leave the guest paused after creation
        #[arg(long)]
        paused: bool,
        /// automatically destroy the guest when vsh disconnects
        #[arg(long)]
        autodestroy: bool,
        /// avoid file system cache when loading
        #[arg(long)]
        bypass_cache: bool,
        /// force fresh boot by discarding any managed save
        #[arg(long)]
        force_boot: bool,
    },
    /// gracefully shutdown a domain
    Shutdown {
        #[command(flatten)]
        domain: DomArg,
        /// shutdown mode: acpi|agent|initctl|signal|paravirt
        #[arg(long)]
        mode: Option<String>,
    },
    /// destroy (stop) a domain
    Destroy {
        #[command(flatten)]
        domain: DomArg,
        /// terminate gracefully
        #[arg(long)]
        graceful: bool,
    },
    /// suspend a domain
    Suspend(DomArg),
    /// resume a domain
    Resume(DomArg),
    /// reboot a domain
    Reboot {
        #[command(flatten)]
        domain: DomArg,
        /// shutdown mode: acpi|agent|initctl|signal|paravirt
        #[arg(long)]
        mode: Option<String>,
    },
    /// reset a domain
    Reset(DomArg),
    /// domain information in XML
    Dumpxml {
        #[command(flatten)]
        domain: DomArg,
        /// show inactive defined XML
        #[arg(long)]
        inactive: bool,
        /// include security sensitive information in XML dump
        #[arg(long)]
        security_info: bool,
        /// update guest CPU according to host CPU
        #[arg(long)]
        update_cpu: bool,
        /// provide XML suitable for migrations
        #[arg(long)]
        migratable: bool,
    },
    /// autostart a domain
    Autostart {
        #[command(flatten)]
        domain: DomArg,
        /// disable autostarting
        #[arg(long)]
        disable: bool,
    },
    /// Convert domain XML to native guest configuration
    DomxmlToNative {
        /// target config data type format
        #[arg(value_name = "FORMAT")]
        format: String,
        /// domain XML file
        #[arg(value_name = "XML", required_unless_present = "xml")]
        file: Option<String>,
        /// domain XML file
        #[arg(long = "xml", value_name = "XML", conflicts_with = "file")]
        xml: Option<String>,
    },
    /// show or set domain's description or title
    Desc {
        #[command(flatten)]
        domain: DomArg,
        /// modify/get the title instead of description
        #[arg(long)]
        title: bool,
        /// message
        #[arg(long = "new-desc", value_name = "TEXT", conflicts_with = "words")]
        new_desc: Option<String>,
        /// message (the rest of the words)
        #[arg(value_name = "TEXT", num_args = 0..)]
        words: Vec<String>,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// change memory allocation
    Setmem {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        size: SizeArg,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// change number of virtual CPUs
    Setvcpus {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        count: CountArg,
        /// set maximum limit on next boot
        #[arg(long)]
        maximum: bool,
        /// modify cpu state in the guest
        #[arg(long)]
        guest: bool,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// attach device from an XML file
    AttachDevice {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        file: FileArg,
        /// make live change persistent
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// detach device from an XML file
    DetachDevice {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        file: FileArg,
        /// make live change persistent
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// update device from an XML file
    UpdateDevice {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        file: FileArg,
        /// make live change persistent
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        impact: ImpactArgs,
        /// force device update
        #[arg(long)]
        force: bool,
    },
    /// Change media of CD or floppy drive
    ChangeMedia(Box<ChangeMediaArgs>),
    /// save a domain state to a file
    Save {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        file: SaveToArg,
        /// set domain to be running on restore
        #[arg(long)]
        running: bool,
        /// set domain to be paused on restore
        #[arg(long)]
        paused: bool,
    },
    /// restore a domain from a saved state in a file
    Restore {
        #[command(flatten)]
        file: RestoreFromArg,
        /// restore domain into running state
        #[arg(long)]
        running: bool,
        /// restore domain into paused state
        #[arg(long)]
        paused: bool,
    },
    /// get link state of a virtual interface
    DomifGetlink {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        interface: IfaceArg,
        /// Get persistent interface state
        #[arg(long)]
        config: bool,
    },
    /// get/set parameters of a virtual interface
    Domiftune {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        interface: IfaceArg,
        /// control domain's incoming traffics
        #[arg(long, value_name = "average,peak,burst,floor")]
        inbound: Option<String>,
        /// control domain's outgoing traffics
        #[arg(long, value_name = "average,peak,burst")]
        outbound: Option<String>,
        #[command(flatten)]
        impact: ImpactArgs,
    },
    /// set link state of a virtual interface
    DomifSetlink {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        interface: IfaceArg,
        #[command(flatten)]
        state: StateArg,
        /// affect next boot
        #[arg(long)]
        config: bool,
    },
    /// attach disk device
    AttachDisk(Box<AttachDiskArgs>),
    /// attach network interface
    AttachInterface(Box<AttachInterfaceArgs>),
    /// detach network interface
    DetachInterface {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        r#type: TypeArg,
        /// MAC address
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
        /// make live change persistent
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        impact: ImpactArgs,
        /// print XML document rather than detach the interface
        #[arg(long = "print-xml")]
        print_xml: bool,
    },
    /// detach disk device
    DetachDisk {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        target: TargetArg,
        /// make live change persistent
        #[arg(long)]
        persistent: bool,
        #[command(flatten)]
        impact: ImpactArgs,
        /// print XML document rather than detach the disk
        #[arg(long = "print-xml")]
        print_xml: bool,
    },
    /// get device block stats for a domain
    Domblkstat {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        device: DevArg,
    },
    /// get network interface stats for a domain
    Domifstat {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        interface: IfaceArg,
    },
    /// get memory statistics for a domain
    Dommemstat(DomArg),
    /// connect to the guest console
    Console {
        #[command(flatten)]
        domain: DomArg,
        /// character device name
        #[arg(long = "devname", value_name = "DEVNAME")]
        devname: Option<String>,
        /// force console connection (disconnect already connected sessions)
        #[arg(long)]
        force: bool,
    },
    /// managed save of a domain state
    Managedsave(DomArg),
    /// Remove managed save of a domain
    ManagedsaveRemove(DomArg),
    /// list all domain blocks
    Domblklist {
        #[command(flatten)]
        domain: DomArg,
        /// get inactive rather than running configuration
        #[arg(long)]
        inactive: bool,
        /// additionally display the type and device value
        #[arg(long)]
        details: bool,
    },
    /// list all domain virtual interfaces
    Domiflist {
        #[command(flatten)]
        domain: DomArg,
        /// get inactive rather than running configuration
        #[arg(long)]
        inactive: bool,
    },
    /// get statistics about one or multiple domains
    Domstats(DomstatsArgs),
    /// Get network interfaces' addresses for a running domain
    Domifaddr {
        #[command(flatten)]
        domain: DomArg,
        /// network interface name
        #[arg(long = "interface", value_name = "INTERFACE")]
        interface: Option<String>,
        /// always display names and MACs of interfaces
        #[arg(long)]
        full: bool,
        /// address source: 'lease', 'agent', or 'arp'
        #[arg(long, value_name = "SOURCE")]
        source: Option<String>,
    },
}

/// Domain snapshot commands.
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Create a snapshot from a set of args
    SnapshotCreateAs {
        #[command(flatten)]
        domain: DomArg,
        /// name of snapshot
        #[arg(value_name = "NAME", conflicts_with = "name_opt")]
        name: Option<String>,
        /// name of snapshot
        #[arg(id = "name_opt", long = "name", value_name = "NAME")]
        name_opt: Option<String>,
        /// description of snapshot
        #[arg(value_name = "DESCRIPTION", conflicts_with = "description_opt")]
        description: Option<String>,
        /// description of snapshot
        #[arg(
            id = "description_opt",
            long = "description",
            value_name = "DESCRIPTION"
        )]
        description_opt: Option<String>,
        /// print XML document rather than create
        #[arg(long)]
        print_xml: bool,
        #[command(flatten)]
        flags: SnapCreateArgs,
    },
    /// Create a snapshot from XML
    SnapshotCreate {
        #[command(flatten)]
        domain: DomArg,
        /// domain snapshot XML
        #[arg(value_name = "XMLFILE")]
        xmlfile: Option<String>,
        /// redefine metadata for existing snapshot
        #[arg(long)]
        redefine: bool,
        /// with redefine, set current snapshot
        #[arg(long)]
        current: bool,
        #[command(flatten)]
        flags: SnapCreateArgs,
    },
    /// List snapshots for a domain
    SnapshotList {
        #[command(flatten)]
        domain: DomArg,
        /// add a column showing parent snapshot
        #[arg(long)]
        parent: bool,
        /// list only snapshots without parents
        #[arg(long)]
        roots: bool,
        /// list only snapshots without children
        #[arg(long)]
        leaves: bool,
        /// list only snapshots that are not leaves (with children)
        #[arg(long)]
        no_leaves: bool,
        /// list only snapshots that have metadata that would prevent undefine
        #[arg(long)]
        metadata: bool,
        /// list only snapshots that have no metadata managed by libvirt
        #[arg(long)]
        no_metadata: bool,
        /// filter by snapshots taken while inactive
        #[arg(long)]
        inactive: bool,
        /// filter by snapshots taken while active (full system snapshots)
        #[arg(long)]
        active: bool,
        /// filter by disk-only snapshots
        #[arg(long)]
        disk_only: bool,
        /// sort list topologically rather than by name
        #[arg(long)]
        topological: bool,
        /// list snapshot names only
        #[arg(long)]
        name: bool,
    },
    /// Get or set the current snapshot
    SnapshotCurrent {
        #[command(flatten)]
        domain: DomArg,
        /// list the name, rather than the full xml
        #[arg(long)]
        name: bool,
    },
    /// Dump XML for a domain snapshot
    SnapshotDumpxml {
        #[command(flatten)]
        domain: DomArg,
        #[command(flatten)]
        snapshot: SnapArg,
    },
    /// Revert a domain to a snapshot
    SnapshotRevert {
        #[command(flatten)]
        domain: DomArg,
        /// snapshot name
        #[arg(value_name = "SNAPSHOT", conflicts_with = "current")]
        snapshotname: Option<String>,
        /// revert to current snapshot
        #[arg(long)]
        current: bool,
    },
    /// Delete a domain snapshot
    SnapshotDelete {
        #[command(flatten)]
        domain: DomArg,
        /// snapshot name
        #[arg(value_name = "SNAPSHOT", conflicts_with = "current")]
        snapshotname: Option<String>,
        /// delete current snapshot
        #[arg(long)]
        current: bool,
        /// delete snapshot and all children
        #[arg(long, conflicts_with = "children_only")]
        children: bool,
        /// delete children but not snapshot
        #[arg(long)]
        children_only: bool,
        /// delete only libvirt metadata, leaving snapshot contents behind
        #[arg(long)]
        metadata: bool,
    },
}

/// Virtual network commands.
#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// list networks
    NetList(NetListArgs),
    /// define an inactive persistent virtual network from an XML file
    NetDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// create a network from an XML file
    NetCreate {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// start a (previously defined) inactive network
    NetStart(NetArg),
    /// destroy (stop) a network
    NetDestroy(NetArg),
    /// undefine a persistent network
    NetUndefine(NetArg),
    /// network information in XML
    NetDumpxml {
        #[command(flatten)]
        network: NetArg,
        /// show inactive defined XML
        #[arg(long)]
        inactive: bool,
    },
    /// network information
    NetInfo(NetArg),
    /// autostart a network
    NetAutostart {
        #[command(flatten)]
        network: NetArg,
        /// disable autostarting
        #[arg(long)]
        disable: bool,
    },
    /// print lease info for a given network
    NetDhcpLeases {
        #[command(flatten)]
        network: NetArg,
        /// MAC address
        #[arg(long, value_name = "MAC")]
        mac: Option<String>,
    },
    /// list network ports
    NetPortList {
        #[command(flatten)]
        network: NetArg,
        /// list uuid's only
        #[arg(long)]
        uuid: bool,
        /// list table (default)
        #[arg(long)]
        table: bool,
    },
    /// create a network port from an XML file
    NetPortCreate {
        #[command(flatten)]
        network: NetArg,
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// network port information in XML
    NetPortDumpxml {
        #[command(flatten)]
        network: NetArg,
        #[command(flatten)]
        port: PortArg,
    },
    /// delete the specified network port
    NetPortDelete {
        #[command(flatten)]
        network: NetArg,
        #[command(flatten)]
        port: PortArg,
    },
    /// convert a network name to network UUID
    NetUuid(NetArg),
    /// convert a network UUID to network name
    NetName(NetArg),
}

/// Storage pool and volume commands.
#[derive(Debug, Subcommand)]
pub enum StorageCmd {
    /// list pools
    PoolList(PoolListArgs),
    /// define an inactive persistent storage pool from an XML file
    PoolDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// create a pool from an XML file
    PoolCreate {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// start a (previously defined) inactive pool
    PoolStart(PoolArg),
    /// destroy (stop) a pool
    PoolDestroy(PoolArg),
    /// undefine an inactive pool
    PoolUndefine(PoolArg),
    /// refresh a pool
    PoolRefresh(PoolArg),
    /// pool information in XML
    PoolDumpxml {
        #[command(flatten)]
        pool: PoolArg,
        /// show inactive defined XML
        #[arg(long)]
        inactive: bool,
    },
    /// storage pool information
    PoolInfo(PoolArg),
    /// autostart a pool
    PoolAutostart {
        #[command(flatten)]
        pool: PoolArg,
        /// disable autostarting
        #[arg(long)]
        disable: bool,
    },
    /// list vols
    VolList {
        #[command(flatten)]
        pool: PoolArg,
        /// display extended details for volumes
        #[arg(long)]
        details: bool,
    },
    /// create a vol from an XML file
    VolCreate {
        #[command(flatten)]
        pool: PoolArg,
        #[command(flatten)]
        file: FileArg,
        /// preallocate metadata (for qcow2 instead of full allocation)
        #[arg(long)]
        prealloc_metadata: bool,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// vol information in XML
    VolDumpxml {
        #[command(flatten)]
        vol: VolArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
    },
    /// delete a vol
    VolDelete {
        #[command(flatten)]
        vol: VolArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
    },
    /// upload file contents to a volume
    VolUpload {
        #[command(flatten)]
        vol: VolArg,
        #[command(flatten)]
        file: FileArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
        /// volume offset to upload to
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// amount of data to upload
        #[arg(long, default_value_t = 0)]
        length: u64,
        /// preserve sparseness of volume
        #[arg(long)]
        sparse: bool,
    },
    /// download volume contents to a file
    VolDownload {
        #[command(flatten)]
        vol: VolArg,
        #[command(flatten)]
        file: FileArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
        /// volume offset to download from
        #[arg(long, default_value_t = 0)]
        offset: u64,
        /// amount of data to download
        #[arg(long, default_value_t = 0)]
        length: u64,
        /// preserve sparseness of volume
        #[arg(long)]
        sparse: bool,
    },
    /// storage vol information
    VolInfo {
        #[command(flatten)]
        vol: VolArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
    },
    /// convert a pool name to pool UUID
    PoolUuid(PoolArg),
    /// convert a pool UUID to pool name
    PoolName(PoolArg),
    /// build a pool
    PoolBuild(PoolArg),
    /// delete a pool
    PoolDelete(PoolArg),
    /// returns the volume path for a given volume name or key
    VolPath {
        #[command(flatten)]
        vol: VolArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
    },
    /// returns the volume name for a given volume key or path
    VolName(VolArg),
    /// returns the volume key for a given volume name or path
    VolKey {
        #[command(flatten)]
        vol: VolArg,
        /// pool name or uuid
        #[arg(long = "pool", value_name = "POOL")]
        pool: Option<String>,
    },
    /// returns the storage pool for a given volume key or path
    VolPool {
        #[command(flatten)]
        vol: VolArg,
        /// return the pool uuid rather than pool name
        #[arg(long)]
        uuid: bool,
    },
}

/// Host interface and node device commands.
#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// list physical host interfaces
    IfaceList {
        /// list inactive interfaces
        #[arg(long)]
        inactive: bool,
        /// list inactive & active interfaces
        #[arg(long)]
        all: bool,
    },
    /// interface information in XML
    IfaceDumpxml {
        #[command(flatten)]
        interface: IfaceArg,
        /// show inactive defined XML
        #[arg(long)]
        inactive: bool,
    },
    /// enumerate devices on this host
    NodedevList {
        /// capability names, separated by comma
        #[arg(long = "cap", value_name = "CAP")]
        cap: Option<String>,
        /// list inactive devices
        #[arg(long)]
        inactive: bool,
        /// list inactive & active devices
        #[arg(long)]
        all: bool,
    },
    /// node device details in XML
    NodedevDumpxml(DevArg),
    /// define an inactive persistent physical host interface or modify an existing persistent one from an XML file
    IfaceDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// undefine a physical host interface (remove it from configuration)
    IfaceUndefine(IfaceArg),
    /// start a physical host interface (enable it / "if-up")
    IfaceStart(IfaceArg),
    /// destroy a physical host interface (disable it / "if-down")
    IfaceDestroy(IfaceArg),
    /// convert an interface name to interface MAC address
    IfaceMac(IfaceArg),
    /// convert an interface MAC address to interface name
    IfaceName(IfaceArg),
    /// create a snapshot of current interfaces settings, which can be later committed (iface-commit) or restored (iface-rollback)
    IfaceBegin,
    /// commit changes made since iface-begin and free restore point
    IfaceCommit,
    /// rollback to previous saved configuration created via iface-begin
    IfaceRollback,
    /// create a device defined by an XML file on the node
    NodedevCreate {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// Define a device by an xml file on a node
    NodedevDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// destroy (stop) a device on the node
    NodedevDestroy(DevArg),
    /// Undefine an inactive node device
    NodedevUndefine(DevArg),
    /// Start an inactive node device
    NodedevStart(DevArg),
    /// autostart a defined node device
    NodedevAutostart {
        #[command(flatten)]
        device: DevArg,
        /// disable autostarting
        #[arg(long)]
        disable: bool,
    },
    /// node device information
    NodedevInfo(DevArg),
    /// detach node device from its device driver
    NodedevDetach(DevArg),
    /// reattach node device to its device driver
    NodedevReattach(DevArg),
    /// reset node device
    NodedevReset(DevArg),
}

/// Secret and network filter commands.
#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// list secrets
    SecretList {
        /// list ephemeral secrets
        #[arg(long)]
        ephemeral: bool,
        /// list non-ephemeral secrets
        #[arg(long)]
        no_ephemeral: bool,
        /// list private secrets
        #[arg(long)]
        private: bool,
        /// list non-private secrets
        #[arg(long)]
        no_private: bool,
    },
    /// define or modify a secret from an XML file
    SecretDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// secret attributes in XML
    SecretDumpxml(SecretArg),
    /// undefine a secret
    SecretUndefine(SecretArg),
    /// set a secret value
    SecretSetValue {
        #[command(flatten)]
        secret: SecretArg,
        /// read secret from file
        #[arg(long = "file", value_name = "FILE", conflicts_with = "base64")]
        file: Option<String>,
        /// read the secret from file without converting from base64
        #[arg(long, conflicts_with = "base64")]
        plain: bool,
        /// base64-encoded secret value
        #[arg(long = "base64", value_name = "BASE64")]
        base64: Option<String>,
    },
    /// Output a secret value
    SecretGetValue {
        #[command(flatten)]
        secret: SecretArg,
        /// get value without converting to base64
        #[arg(long)]
        plain: bool,
    },
    /// list network filters
    NwfilterList,
    /// define or update a network filter from an XML file
    NwfilterDefine {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// undefine a network filter
    NwfilterUndefine(NwfilterArg),
    /// network filter information in XML
    NwfilterDumpxml(NwfilterArg),
    /// list network filter bindings
    NwfilterBindingList,
    /// create a network filter binding from an XML file
    NwfilterBindingCreate {
        #[command(flatten)]
        file: FileArg,
        /// validate the XML against the schema
        #[arg(long)]
        validate: bool,
    },
    /// delete a network filter binding
    NwfilterBindingDelete(BindingArg),
    /// network filter information in XML
    NwfilterBindingDumpxml(BindingArg),
}

/// Event commands.
#[derive(Debug, Subcommand)]
pub enum EventCmd {
    /// Domain Events
    Event(EventArgs),
    /// Network Events
    NetEvent(NetEventArgs),
    /// Storage Pool Events
    PoolEvent(PoolEventArgs),
    /// Node Device Events
    NodedevEvent(NodedevEventArgs),
    /// Secret Events
    SecretEvent(SecretEventArgs),
}

/// Flags of snapshot-create and snapshot-create-as.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct SnapCreateArgs {
    /// take snapshot but create no metadata
    #[arg(long)]
    pub no_metadata: bool,
    /// halt domain after snapshot is created
    #[arg(long)]
    pub halt: bool,
    /// capture disk state but not vm state
    #[arg(long)]
    pub disk_only: bool,
    /// require atomic operation
    #[arg(long)]
    pub atomic: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct DomstatsArgs {
    /// list of domains to get stats for
    #[arg(value_name = "DOMAIN")]
    pub domains: Vec<String>,
    /// report domain state
    #[arg(long)]
    pub state: bool,
    /// report domain physical cpu usage
    #[arg(long)]
    pub cpu_total: bool,
    /// report domain balloon statistics
    #[arg(long)]
    pub balloon: bool,
    /// report domain virtual cpu information
    #[arg(long)]
    pub vcpu: bool,
    /// report domain network interface information
    #[arg(long)]
    pub interface: bool,
    /// report domain block device statistics
    #[arg(long)]
    pub block: bool,
    /// report domain perf event statistics
    #[arg(long)]
    pub perf: bool,
    /// report domain IOThread information
    #[arg(long)]
    pub iothread: bool,
    /// report domain memory usage
    #[arg(long)]
    pub memory: bool,
    /// report domain dirty rate information
    #[arg(long)]
    pub dirtyrate: bool,
    /// report hypervisor-specific statistics
    #[arg(long)]
    pub vm: bool,
    /// list only active domains
    #[arg(long)]
    pub list_active: bool,
    /// list only inactive domains
    #[arg(long)]
    pub list_inactive: bool,
    /// list only persistent domains
    #[arg(long)]
    pub list_persistent: bool,
    /// list only transient domains
    #[arg(long)]
    pub list_transient: bool,
    /// list only running domains
    #[arg(long)]
    pub list_running: bool,
    /// list only paused domains
    #[arg(long)]
    pub list_paused: bool,
    /// list only shutoff domains
    #[arg(long)]
    pub list_shutoff: bool,
    /// list only domains in other states
    #[arg(long)]
    pub list_other: bool,
}

impl DomstatsArgs {
    /// The VIR_DOMAIN_STATS_* groups asked for, by virsh's option names;
    /// none means every group the driver has.
    pub fn groups(&self) -> Vec<String> {
        [
            (self.state, "state"),
            (self.cpu_total, "cpu-total"),
            (self.balloon, "balloon"),
            (self.vcpu, "vcpu"),
            (self.interface, "interface"),
            (self.block, "block"),
            (self.perf, "perf"),
            (self.iothread, "iothread"),
            (self.memory, "memory"),
            (self.dirtyrate, "dirtyrate"),
            (self.vm, "vm"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, g)| (*g).to_owned())
        .collect()
    }
}

/// attach-disk's options (cmdAttachDisk).
#[derive(Debug, Clone, Args)]
pub struct AttachDiskArgs {
    #[command(flatten)]
    pub domain: DomArg,
    #[command(flatten)]
    pub source: DiskSourceArg,
    #[command(flatten)]
    pub target: TargetArg,
    /// target bus of disk device
    #[arg(long, value_name = "BUS")]
    pub targetbus: Option<String>,
    /// driver of disk device
    #[arg(long, value_name = "DRIVER")]
    pub driver: Option<String>,
    /// subdriver of disk device
    #[arg(long, value_name = "SUBDRIVER")]
    pub subdriver: Option<String>,
    /// IOThread to be used by supported device
    #[arg(long, value_name = "IOTHREAD")]
    pub iothread: Option<String>,
    /// cache mode of disk device
    #[arg(long, value_name = "CACHE")]
    pub cache: Option<String>,
    /// io policy of disk device
    #[arg(long, value_name = "IO")]
    pub io: Option<String>,
    /// target device type
    #[arg(long = "type", value_name = "TYPE")]
    pub device_type: Option<String>,
    /// mode=shareable
    #[arg(long, conflicts_with = "mode")]
    pub shareable: bool,
    /// mode of device reading and writing
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// type of source (block|file|network)
    #[arg(long, value_name = "TYPE")]
    pub sourcetype: Option<String>,
    /// serial of disk device
    #[arg(long, value_name = "SERIAL")]
    pub serial: Option<String>,
    /// wwn of disk device
    #[arg(long, value_name = "WWN")]
    pub wwn: Option<String>,
    /// custom alias name of disk device
    #[arg(long, value_name = "ALIAS")]
    pub alias: Option<String>,
    /// needs rawio capability
    #[arg(long)]
    pub rawio: bool,
    /// address of disk device
    #[arg(long, value_name = "ADDRESS")]
    pub address: Option<String>,
    /// use multifunction pci under specified address
    #[arg(long)]
    pub multifunction: bool,
    /// print XML document rather than attach the disk
    #[arg(long = "print-xml")]
    pub print_xml: bool,
    /// protocol used by disk device source
    #[arg(long = "source-protocol", value_name = "PROTOCOL")]
    pub source_protocol: Option<String>,
    /// host name for source of disk device
    #[arg(long = "source-host-name", value_name = "NAME")]
    pub source_host_name: Option<String>,
    /// host transport for source of disk device
    #[arg(long = "source-host-transport", value_name = "TRANSPORT")]
    pub source_host_transport: Option<String>,
    /// host socket for source of disk device
    #[arg(long = "source-host-socket", value_name = "SOCKET")]
    pub source_host_socket: Option<String>,
    /// make live change persistent
    #[arg(long)]
    pub persistent: bool,
    #[command(flatten)]
    pub impact: ImpactArgs,
}

/// attach-interface's options (cmdAttachInterface).
#[derive(Debug, Clone, Args)]
pub struct AttachInterfaceArgs {
    #[command(flatten)]
    pub domain: DomArg,
    #[command(flatten)]
    pub r#type: TypeArg,
    #[command(flatten)]
    pub source: IfSourceArg,
    /// target network name
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// MAC address
    #[arg(long, value_name = "MAC")]
    pub mac: Option<String>,
    /// script used to bridge network interface
    #[arg(long, value_name = "SCRIPT")]
    pub script: Option<String>,
    /// model type
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// custom alias name of interface device
    #[arg(long, value_name = "ALIAS")]
    pub alias: Option<String>,
    /// control domain's incoming traffics
    #[arg(long, value_name = "RATE")]
    pub inbound: Option<String>,
    /// control domain's outgoing traffics
    #[arg(long, value_name = "RATE")]
    pub outbound: Option<String>,
    /// make live change persistent
    #[arg(long)]
    pub persistent: bool,
    #[command(flatten)]
    pub impact: ImpactArgs,
    /// print XML document rather than attach the interface
    #[arg(long = "print-xml")]
    pub print_xml: bool,
    /// libvirt will automatically detach/attach the device from/to host
    #[arg(long)]
    pub managed: bool,
    /// mode attribute of <source/> element
    #[arg(long = "source-mode", value_name = "MODE")]
    pub source_mode: Option<String>,
}

/// virsh's `--config/--live/--current`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct ImpactArgs {
    /// affect next boot
    #[arg(long)]
    pub config: bool,
    /// affect running domain
    #[arg(long)]
    pub live: bool,
    /// affect current domain
    #[arg(long)]
    pub current: bool,
}

/// change-media's options.
#[derive(Debug, Clone, Args)]
pub struct ChangeMediaArgs {
    #[command(flatten)]
    pub domain: DomArg,
    #[command(flatten)]
    pub path: PathArg,
    /// source of the media
    #[arg(value_name = "SOURCE", conflicts_with = "source")]
    pub source_pos: Option<String>,
    #[arg(long = "source", value_name = "SOURCE")]
    pub source: Option<String>,
    /// Eject the media
    #[arg(long)]
    pub eject: bool,
    /// Insert the media
    #[arg(long)]
    pub insert: bool,
    /// Update the media
    #[arg(long)]
    pub update: bool,
    #[command(flatten)]
    pub impact: ImpactArgs,
    /// force media changing
    #[arg(long)]
    pub force: bool,
    /// print XML document rather than change media
    #[arg(long = "print-xml")]
    pub print_xml: bool,
    /// source media is a block device
    #[arg(long)]
    pub block: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ListArgs {
    /// list inactive domains
    #[arg(long)]
    pub inactive: bool,
    /// list inactive & active domains
    #[arg(long)]
    pub all: bool,
    /// list transient domains
    #[arg(long)]
    pub transient: bool,
    /// list persistent domains
    #[arg(long)]
    pub persistent: bool,
    /// list domains with existing snapshot
    #[arg(long)]
    pub with_snapshot: bool,
    /// list domains without a snapshot
    #[arg(long)]
    pub without_snapshot: bool,
    /// list domains in running state
    #[arg(long)]
    pub state_running: bool,
    /// list domains in paused state
    #[arg(long)]
    pub state_paused: bool,
    /// list domains in shutoff state
    #[arg(long)]
    pub state_shutoff: bool,
    /// list domains in other states
    #[arg(long)]
    pub state_other: bool,
    /// list domains with autostart enabled
    #[arg(long)]
    pub autostart: bool,
    /// list domains with autostart disabled
    #[arg(long)]
    pub no_autostart: bool,
    /// list domains with managed save state
    #[arg(long)]
    pub with_managed_save: bool,
    /// list domains without managed save
    #[arg(long)]
    pub without_managed_save: bool,
    /// list uuid's only
    #[arg(long)]
    pub uuid: bool,
    /// list domain names only
    #[arg(long)]
    pub name: bool,
    /// list domain IDs only
    #[arg(long)]
    pub id: bool,
    /// list table (default)
    #[arg(long, conflicts_with_all = ["name", "id"])]
    pub table: bool,
    /// mark inactive domains with managed save state
    #[arg(long)]
    pub managed_save: bool,
    /// show domain title
    #[arg(long)]
    pub title: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct NetListArgs {
    /// list inactive networks
    #[arg(long)]
    pub inactive: bool,
    /// list inactive & active networks
    #[arg(long)]
    pub all: bool,
    /// list persistent networks
    #[arg(long)]
    pub persistent: bool,
    /// list transient networks
    #[arg(long)]
    pub transient: bool,
    /// list networks with autostart enabled
    #[arg(long)]
    pub autostart: bool,
    /// list networks with autostart disabled
    #[arg(long)]
    pub no_autostart: bool,
    /// list uuid's only
    #[arg(long)]
    pub uuid: bool,
    /// list network names only
    #[arg(long)]
    pub name: bool,
    /// list table (default)
    #[arg(long, conflicts_with_all = ["name", "uuid"])]
    pub table: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct PoolListArgs {
    /// list inactive pools
    #[arg(long)]
    pub inactive: bool,
    /// list inactive & active pools
    #[arg(long)]
    pub all: bool,
    /// list transient pools
    #[arg(long)]
    pub transient: bool,
    /// list persistent pools
    #[arg(long)]
    pub persistent: bool,
    /// list pools with autostart enabled
    #[arg(long)]
    pub autostart: bool,
    /// list pools with autostart disabled
    #[arg(long)]
    pub no_autostart: bool,
    /// display extended details for pools
    #[arg(long, conflicts_with_all = ["name", "uuid"])]
    pub details: bool,
    /// list UUID of active pools only
    #[arg(long)]
    pub uuid: bool,
    /// list name of active pools only
    #[arg(long)]
    pub name: bool,
}

/// Options of net-event, pool-event, nodedev-event and secret-event, once
/// parsed; each command names its object filter after its family.
#[derive(Debug, Clone, Default)]
pub struct FamilyEventArgs {
    pub object: Option<String>,
    pub event: Option<String>,
    pub r#loop: bool,
    pub timeout: Option<u64>,
    pub list: bool,
    pub timestamp: bool,
}

macro_rules! family_event_args {
    ($name:ident, $long:literal, $help:literal) => {
        #[derive(Debug, Clone, Default, Args)]
        pub struct $name {
            #[arg(long = $long, value_name = "OBJECT", help = $help)]
            pub object: Option<String>,
            /// which event type to wait for
            #[arg(long = "event", value_name = "EVENT", conflicts_with = "list")]
            pub event: Option<String>,
            /// loop until timeout or interrupt, rather than one-shot
            #[arg(long = "loop")]
            pub r#loop: bool,
            /// timeout seconds
            #[arg(long, value_name = "SECONDS")]
            pub timeout: Option<u64>,
            /// list valid event types
            #[arg(long)]
            pub list: bool,
            /// show timestamp for each printed event
            #[arg(long)]
            pub timestamp: bool,
        }

        impl From<$name> for FamilyEventArgs {
            fn from(a: $name) -> Self {
                FamilyEventArgs {
                    object: a.object,
                    event: a.event,
                    r#loop: a.r#loop,
                    timeout: a.timeout,
                    list: a.list,
                    timestamp: a.timestamp,
                }
            }
        }
    };
}

family_event_args!(NetEventArgs, "network", "filter by network name or uuid");
family_event_args!(PoolEventArgs, "pool", "filter by storage pool name or uuid");
family_event_args!(NodedevEventArgs, "device", "filter by node device name");
family_event_args!(SecretEventArgs, "secret", "filter by secret UUID");

#[derive(Debug, Clone, Default, Args)]
pub struct EventArgs {
    /// filter by domain name, id or uuid
    #[arg(long = "domain", value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// which event type to wait for
    #[arg(long = "event", value_name = "EVENT", conflicts_with_all = ["all", "list"])]
    pub event: Option<String>,
    /// wait for all events instead of just one type
    #[arg(long, conflicts_with = "list")]
    pub all: bool,
    /// loop until timeout or interrupt, rather than one-shot
    #[arg(long = "loop")]
    pub r#loop: bool,
    /// timeout seconds
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// list valid event types
    #[arg(long)]
    pub list: bool,
    /// show timestamp for each printed event
    #[arg(long)]
    pub timestamp: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("vsh").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn positional_and_named_forms_agree() {
        for args in [&["start", "vm1"][..], &["start", "--domain", "vm1"][..]] {
            match parse(args).map(|c| c.command) {
                Ok(Command::Domain(DomainCmd::Start { domain, .. })) => {
                    assert_eq!(domain.get(), "vm1")
                }
                other => panic!("unexpected parse: {other:?}"),
            }
        }
    }

    #[test]
    fn missing_required_argument_is_an_error() {
        assert!(parse(&["start"]).is_err());
        assert!(parse(&["start", "a", "--domain", "b"]).is_err());
    }

    #[test]
    fn global_options() {
        let cli = parse(&[
            "-c",
            "test:///default",
            "--gateway",
            "unix:/run/gw.sock",
            "-q",
            "list",
            "--all",
        ])
        .expect("valid command line");
        assert_eq!(cli.connect.as_deref(), Some("test:///default"));
        assert_eq!(
            cli.gateway_addr(|_| None).ok(),
            Some(ListenAddr::Unix("/run/gw.sock".into()))
        );
        assert!(cli.quiet);
        assert!(matches!(
            cli.command,
            Command::Domain(DomainCmd::List(ListArgs { all: true, .. }))
        ));
    }

    #[test]
    fn gateway_from_env_or_default() {
        let cli = parse(&["uri"]).expect("valid command line");
        let default = ListenAddr::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], 16509)));
        assert_eq!(cli.gateway_addr(|_| None).ok(), Some(default.clone()));
        assert_eq!(
            cli.gateway_addr(|_| Some(String::new())).ok(),
            Some(default)
        );
        assert_eq!(
            cli.gateway_addr(|_| Some("unix:/x".into())).ok(),
            Some(ListenAddr::Unix("/x".into()))
        );
        assert!(cli.gateway_addr(|_| Some("bogus".into())).is_err());
    }

    #[test]
    fn vol_create_takes_pool_then_file() {
        match parse(&["vol-create", "default-pool", "v.xml"]).map(|c| c.command) {
            Ok(Command::Storage(StorageCmd::VolCreate { pool, file, .. })) => {
                assert_eq!(pool.get(), "default-pool");
                assert_eq!(file.get(), "v.xml");
            }
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn vol_dumpxml_with_pool_option() {
        match parse(&["vol-dumpxml", "--pool", "p", "v"]).map(|c| c.command) {
            Ok(Command::Storage(StorageCmd::VolDumpxml { vol, pool })) => {
                assert_eq!(vol.get(), "v");
                assert_eq!(pool.as_deref(), Some("p"));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
    }

    #[test]
    fn event_options() {
        match parse(&["event", "--loop", "--all", "--timeout", "3"]).map(|c| c.command) {
            Ok(Command::Event(EventCmd::Event(e))) => {
                assert!(e.r#loop && e.all);
                assert_eq!(e.timeout, Some(3));
            }
            other => panic!("unexpected parse: {other:?}"),
        }
        assert!(parse(&["event", "--all", "--event", "lifecycle"]).is_err());
    }
}
