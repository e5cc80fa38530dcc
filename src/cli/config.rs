//! `fjord config describe|alter --topic T | --broker ID`: a topic's or a broker's configs
//! over the Kafka protocol (DescribeConfigs and IncrementalAlterConfigs), as Kafka's
//! `kafka-configs --describe|--alter` reads and changes them.

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

/// Whose configs: a topic's or a broker's.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct Resource {
    /// A topic's configs.
    #[arg(long)]
    topic: Option<String>,
    /// A broker's configs, by broker id.
    #[arg(long)]
    broker: Option<i32>,
}

impl Resource {
    fn kind_and_name(&self) -> (i8, String, String) {
        match (&self.topic, self.broker) {
            (Some(topic), _) => (RESOURCE_TOPIC, topic.clone(), format!("topic {topic}")),
            (None, Some(id)) => (RESOURCE_BROKER, id.to_string(), format!("broker {id}")),
            (None, None) => unreachable!("clap requires --topic or --broker"),
        }
    }
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
            let (kind, name, what) = resource.kind_and_name();
            let mut client = Client::connect(&bootstrap)?;
            alter(&mut client, kind, &name, &what, &sets, &deletes)?;
            println!("changed the configs of {what}");
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
    let (kind, name, what) = resource.kind_and_name();
    let mut wanted = DescribeConfigsResource::default();
    wanted.resource_type = kind;
    wanted.resource_name = name.into();
    wanted.configuration_keys = None;
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![wanted];
    let mut client = Client::connect(bootstrap)?;
    let response = client.send(-1, &request)?;
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
pub(super) fn alter(
    client: &mut Client,
    kind: i8,
    name: &str,
    what: &str,
    sets: &[String],
    deletes: &[String],
) -> Result<(), CliError> {
    let mut resource = AlterConfigsResource::default();
    resource.resource_type = kind;
    resource.resource_name = name.to_string().into();
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
    let response = client.send(-1, &request)?;
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
