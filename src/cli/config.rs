//! `fjord config describe|alter --topic T | --broker ID | --broker-defaults`: a topic's
//! configs, a broker's, or the cluster-wide broker defaults, over the Kafka protocol
//! (DescribeConfigs and IncrementalAlterConfigs), as Kafka's `kafka-configs
//! --describe|--alter` reads and changes them. A broker's configs are asked of that broker,
//! as Kafka's AdminClient asks them.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};

use super::client::Client;
use super::error::{error_name, CliError};

/// Kafka's resource types.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(Debug, clap::Args)]
pub(super) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

/// Whose configs: a topic's, a broker's, or the cluster-wide broker defaults.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Resource {
    /// A topic's configs.
    #[arg(long)]
    topic: Option<String>,
    /// A broker's configs, by broker id.
    #[arg(long)]
    broker: Option<i32>,
    /// The broker configs every broker takes unless it has its own value.
    #[arg(long)]
    broker_defaults: bool,
}

/// A resource as the protocol names it.
struct Named {
    kind: i8,
    name: String,
    /// How messages name it.
    what: String,
    /// The broker to ask (-1: any).
    node: i32,
}

impl Resource {
    fn named(&self) -> Named {
        match (&self.topic, self.broker) {
            (Some(topic), _) => Named {
                kind: RESOURCE_TOPIC,
                name: topic.clone(),
                what: format!("topic {topic}"),
                node: -1,
            },
            (None, Some(id)) => Named {
                kind: RESOURCE_BROKER,
                name: id.to_string(),
                what: format!("broker {id}"),
                node: id,
            },
            (None, None) => Named {
                kind: RESOURCE_BROKER,
                name: String::new(),
                what: "the cluster-wide broker defaults".to_string(),
                node: -1,
            },
        }
    }
}

/// A client that can reach `resource`'s broker: one that knows every broker's address
/// (from Metadata) when a broker is named.
fn client_for(bootstrap: &str, resource: &Named) -> Result<Client, CliError> {
    let mut client = Client::connect(bootstrap)?;
    if resource.node >= 0 {
        client.metadata(Some(&[]), false)?;
        if !client.broker_addresses().contains_key(&resource.node) {
            return Err(CliError::failure(format!(
                "broker {} is not in the cluster's metadata",
                resource.node
            ))
            .with_hint("fjord cluster status lists the brokers"));
        }
    }
    Ok(client)
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print every config with its value and where the value comes from.
    Describe {
        #[command(flatten)]
        resource: Resource,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Set or remove configs.
    Alter {
        #[command(flatten)]
        resource: Resource,
        #[arg(long, short = 'b', default_value = "127.0.0.1:9092")]
        bootstrap: String,
        /// Set a config, NAME=VALUE; repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Remove a config (back to its default); repeatable.
        #[arg(long = "delete", value_name = "NAME")]
        deletes: Vec<String>,
    },
}

pub(super) fn run(args: ConfigArgs) -> Result<(), CliError> {
    match args.command {
        ConfigCommand::Describe { resource, bootstrap } => describe(&resource, &bootstrap),
        ConfigCommand::Alter { resource, bootstrap, sets, deletes } => {
            if sets.is_empty() && deletes.is_empty() {
                return Err(CliError::usage("nothing to alter")
                    .with_hint("give --set NAME=VALUE or --delete NAME"));
            }
            let resource = resource.named();
            let mut client = client_for(&bootstrap, &resource)?;
            alter(&mut client, &resource, &sets, &deletes)?;
            println!("changed the configs of {}", resource.what);
            Ok(())
        }
    }
}

/// Kafka's names of DescribeConfigs' sources.
fn source_name(source: i8) -> &'static str {
    match source {
        1 => "topic",
        2 => "dynamic broker",
        3 => "dynamic cluster default",
        4 => "static broker",
        5 => "default",
        _ => "unknown",
    }
}

fn describe(resource: &Resource, bootstrap: &str) -> Result<(), CliError> {
    let resource = resource.named();
    let what = &resource.what;
    let mut wanted = DescribeConfigsResource::default();
    wanted.resource_type = resource.kind;
    wanted.resource_name = resource.name.clone().into();
    wanted.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![wanted];
    let mut client = client_for(bootstrap, &resource)?;
    let response = client.send(resource.node, &request)?;
    let result = response
        .results
        .first()
        .ok_or_else(|| CliError::failure("empty DescribeConfigs response"))?;
    if result.error_code != 0 {
        let what = format!("cannot describe the configs of {what}");
        return Err(refused(&what, result.error_code, result.error_message.as_deref()));
    }
    println!("configs of {what}:");
    for config in &result.configs {
        let value = config.value.as_deref().unwrap_or("(null)");
        let read_only = if config.read_only { ", read-only" } else { "" };
        println!(
            "  {}={value} ({}{read_only})",
            config.name.as_str(),
            source_name(config.config_source)
        );
    }
    Ok(())
}

/// IncrementalAlterConfigs of one resource: SET for each `NAME=VALUE` of `sets`, DELETE
/// for each name of `deletes`.
pub(super) fn alter_topic(
    client: &mut Client,
    topic: &str,
    sets: &[String],
    deletes: &[String],
) -> Result<(), CliError> {
    let resource = Named {
        kind: RESOURCE_TOPIC,
        name: topic.to_string(),
        what: format!("topic {topic}"),
        node: -1,
    };
    alter(client, &resource, sets, deletes)
}

fn alter(
    client: &mut Client,
    named: &Named,
    sets: &[String],
    deletes: &[String],
) -> Result<(), CliError> {
    let what = &named.what;
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = named.kind;
    resource.resource_name = named.name.clone().into();
    for pair in sets {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            CliError::usage(format!("{pair:?} is not NAME=VALUE"))
                .with_hint("e.g. retention.ms=3600000")
        })?;
        let mut config = AlterableConfig::default();
        config.name = key.to_string().into();
        config.config_operation = OP_SET;
        config.value = Some(value.to_string().into());
        resource.configs.push(config);
    }
    for key in deletes {
        let mut config = AlterableConfig::default();
        config.name = key.to_string().into();
        config.config_operation = OP_DELETE;
        config.value = None;
        resource.configs.push(config);
    }
    let mut request = IncrementalAlterConfigsRequest::default();
    request.resources = vec![resource];
    let response = client.send(named.node, &request)?;
    let result = response
        .responses
        .first()
        .ok_or_else(|| CliError::failure("empty IncrementalAlterConfigs response"))?;
    if result.error_code != 0 {
        let what = format!("cannot change the configs of {what}");
        return Err(refused(&what, result.error_code, result.error_message.as_deref()));
    }
    Ok(())
}

/// A broker's refusal: what failed, the error's name and the broker's message.
pub(super) fn refused(what: &str, code: i16, message: Option<&str>) -> CliError {
    let message = message.map_or(String::new(), |m| format!(": {m}"));
    CliError::failure(format!("{what}: {}{message}", error_name(code)))
}
