//! [`Ec2Api`], [`Route53Api`] and [`PriceListApi`] over the real AWS SDK.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types as t;
use aws_sdk_route53::types as r53;

use crate::api::*;
use crate::tags;
use crate::{AwsError, Result};

/// The real EC2, Route 53 and Price List APIs.
pub struct SdkApi {
    client: Client,
    route53: aws_sdk_route53::Client,
    pricing: aws_sdk_pricing::Client,
    sts: aws_sdk_sts::Client,
    /// A fleet's load balancer (fleet/sdk.rs).
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    /// A fleet's certificate (fleet/sdk.rs).
    pub(crate) acm: aws_sdk_acm::Client,
    region: String,
    /// Asked once a command.
    account: tokio::sync::OnceCell<String>,
}

impl SdkApi {
    pub fn new(
        client: Client,
        route53: aws_sdk_route53::Client,
        pricing: aws_sdk_pricing::Client,
        sts: aws_sdk_sts::Client,
        elb: aws_sdk_elasticloadbalancingv2::Client,
        acm: aws_sdk_acm::Client,
        region: String,
    ) -> Self {
        SdkApi { client, route53, pricing, sts, elb, acm, region, account: Default::default() }
    }

    async fn authorize(&self, group_id: &str, rules: &[IngressRule]) -> std::result::Result<(), AwsError> {
        let mut req = self.client.authorize_security_group_ingress().group_id(group_id);
        for rule in rules {
            req = req.ip_permissions(permission(rule));
        }
        req.send().await.map_err(aws("AuthorizeSecurityGroupIngress"))?;
        Ok(())
    }
}

/// One rule as EC2's IpPermission.
fn permission(rule: &IngressRule) -> t::IpPermission {
    let perm = t::IpPermission::builder().ip_protocol("tcp").from_port(rule.port.into()).to_port(rule.port.into());
    let perm = if rule.is_group() {
        perm.user_id_group_pairs(t::UserIdGroupPair::builder().group_id(&rule.cidr).build())
    } else if rule.is_ipv6() {
        perm.ipv6_ranges(t::Ipv6Range::builder().cidr_ipv6(&rule.cidr).build())
    } else {
        perm.ip_ranges(t::IpRange::builder().cidr_ip(&rule.cidr).build())
    };
    perm.build()
}

/// Turn an SDK error into ours, keeping AWS's code and message.
pub(crate) fn aws<E, R>(action: &'static str) -> impl FnOnce(SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |err| {
        let code = err.code().map(str::to_owned);
        let message = match (err.message(), &code) {
            (Some(m), _) => m.to_owned(),
            // No answer from AWS: say why (no credentials, network, ...).
            _ => DisplayErrorContext(&err).to_string(),
        };
        tracing::debug!(action, ?code, %message, "aws error");
        AwsError { action, code, message }
    }
}

fn filter(name: &str, values: &[&str]) -> t::Filter {
    let mut f = t::Filter::builder().name(name);
    for v in values {
        f = f.values(*v);
    }
    f.build()
}

fn tag_spec(resource: t::ResourceType, tags: &[Tag]) -> t::TagSpecification {
    let mut spec = t::TagSpecification::builder().resource_type(resource);
    for tag in tags {
        spec = spec.tags(t::Tag::builder().key(&tag.key).value(&tag.value).build());
    }
    spec.build()
}

fn tag_value(tags: &[t::Tag], key: &str) -> Option<String> {
    tags.iter().find(|t| t.key() == Some(key)).and_then(|t| t.value()).map(str::to_owned)
}

fn image_from(i: &t::Image) -> Image {
    Image {
        id: i.image_id().unwrap_or_default().to_owned(),
        name: i.name().unwrap_or_default().to_owned(),
        creation_date: i.creation_date().unwrap_or_default().to_owned(),
        root_device_name: i.root_device_name().unwrap_or("/dev/sda1").to_owned(),
        state: i.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        owner_id: i.owner_id().unwrap_or_default().to_owned(),
        tags: tags_from(i.tags()),
        snapshot_ids: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

/// Tags from (key, value) pairs as other services' SDKs give them.
pub(crate) fn tags_from_pairs(pairs: Vec<(Option<&str>, Option<&str>)>) -> Vec<Tag> {
    pairs.into_iter().map(|(k, v)| Tag::new(k.unwrap_or_default(), v.unwrap_or_default())).collect()
}

fn tags_from(tags: &[t::Tag]) -> Vec<Tag> {
    tags.iter().map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default())).collect()
}

fn snapshot_from(s: &t::Snapshot) -> Snapshot {
    Snapshot { id: s.snapshot_id().unwrap_or_default().to_owned(), tags: tags_from(s.tags()) }
}

fn subnet_from(s: &t::Subnet) -> Subnet {
    Subnet {
        id: s.subnet_id().unwrap_or_default().to_owned(),
        vpc_id: s.vpc_id().unwrap_or_default().to_owned(),
        availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
        default_for_az: s.default_for_az().unwrap_or(false),
    }
}

fn group_from(g: &t::SecurityGroup) -> SecurityGroup {
    let mut ingress = Vec::new();
    for p in g.ip_permissions() {
        if p.ip_protocol() != Some("tcp") {
            continue;
        }
        let (Some(from), Some(to)) = (p.from_port(), p.to_port()) else { continue };
        if from != to {
            continue;
        }
        let port = from as u16;
        for r in p.ip_ranges() {
            if let Some(cidr) = r.cidr_ip() {
                ingress.push(IngressRule { port, cidr: cidr.to_owned() });
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(cidr) = r.cidr_ipv6() {
                ingress.push(IngressRule { port, cidr: cidr.to_owned() });
            }
        }
        for pair in p.user_id_group_pairs() {
            if let Some(group) = pair.group_id() {
                ingress.push(IngressRule { port, cidr: group.to_owned() });
            }
        }
    }
    SecurityGroup {
        id: g.group_id().unwrap_or_default().to_owned(),
        name: g.group_name().unwrap_or_default().to_owned(),
        vpc_id: g.vpc_id().unwrap_or_default().to_owned(),
        ingress,
    }
}

fn instance_from(i: &t::Instance) -> Instance {
    let tags = i.tags();
    Instance {
        id: i.instance_id().unwrap_or_default().to_owned(),
        name: tag_value(tags, tags::SERVER_NAME).or_else(|| tag_value(tags, tags::NAME)).unwrap_or_default(),
        state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_owned()).unwrap_or_else(|| "unknown".into()),
        instance_type: i.instance_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        public_ip: i.public_ip_address().map(str::to_owned),
        ipv6_address: i.ipv6_address().map(str::to_owned),
        launch_time: i
            .launch_time()
            .map(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_else(|_| t.to_string())),
        expires_at: tag_value(tags, tags::EXPIRES_AT),
        vpc_id: i.vpc_id().map(str::to_owned),
        availability_zone: i.placement().and_then(|p| p.availability_zone()).map(str::to_owned),
        security_group_ids: i.security_groups().iter().filter_map(|g| g.group_id()).map(str::to_owned).collect(),
        key_name: i.key_name().map(str::to_owned),
        image_id: i.image_id().map(str::to_owned),
        volume_ids: i
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs().and_then(|e| e.volume_id()))
            .map(str::to_owned)
            .collect(),
        domain: tag_value(tags, tags::DOMAIN),
        webui_domain: tag_value(tags, tags::WEBUI_DOMAIN),
        imds_locked: i.metadata_options().is_some_and(|m| {
            m.http_tokens() == Some(&t::HttpTokensState::Required) && m.http_put_response_hop_limit() == Some(1)
        }),
        autostop: tag_value(tags, tags::AUTOSTOP),
        fleet: tag_value(tags, tags::FLEET),
    }
}

fn address_from(a: &t::Address) -> Option<Address> {
    Some(Address {
        allocation_id: a.allocation_id()?.to_owned(),
        association_id: a.association_id().map(str::to_owned),
        public_ip: a.public_ip().unwrap_or_default().to_owned(),
        instance_id: a.instance_id().filter(|id| !id.is_empty()).map(str::to_owned),
        domain: tag_value(a.tags(), tags::DOMAIN),
        managed_for: (tag_value(a.tags(), tags::MANAGED).as_deref() == Some("true"))
            .then(|| tag_value(a.tags(), tags::SERVER_NAME))
            .flatten(),
    })
}

impl SdkApi {
    async fn describe_addresses(&self, filters: Vec<t::Filter>) -> Result<Vec<Address>> {
        let out = self
            .client
            .describe_addresses()
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(aws("DescribeAddresses"))?;
        Ok(out.addresses().iter().filter_map(address_from).collect())
    }

    /// What a shutdown from inside the instance does: `terminate` or `stop`.
    async fn set_shutdown_behavior(&self, instance_id: &str, behavior: &str) -> Result<()> {
        // The Attribute/Value form: EC2 takes it as well as the
        // InstanceInitiatedShutdownBehavior.Value one, and moto only the former.
        self.client
            .modify_instance_attribute()
            .instance_id(instance_id)
            .attribute(t::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .value(behavior)
            .send()
            .await
            .map_err(aws("ModifyInstanceAttribute"))?;
        Ok(())
    }
}

impl Ec2Api for SdkApi {
    async fn find_images(&self, owner: &str, name_pattern: &str) -> Result<Vec<Image>> {
        let out = self
            .client
            .describe_images()
            .owners(owner)
            .filters(filter("name", &[name_pattern]))
            .filters(filter("architecture", &["x86_64"]))
            .filters(filter("state", &["available"]))
            .send()
            .await
            .map_err(aws("DescribeImages"))?;
        Ok(out.images().iter().map(image_from).collect())
    }

    async fn image(&self, image_id: &str) -> Result<Option<Image>> {
        match self.client.describe_images().image_ids(image_id).send().await {
            Ok(out) => Ok(out.images().first().map(image_from)),
            Err(e) => {
                let e = aws("DescribeImages")(e);
                // A malformed or unknown id is "no such image", not a failure.
                if e.code.as_deref().is_some_and(|c| c.starts_with("InvalidAMIID")) { Ok(None) } else { Err(e.into()) }
            }
        }
    }

    async fn own_images(&self, filter_name: &str, value: &str) -> Result<Vec<Image>> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .filters(filter(filter_name, &[value]))
            .send()
            .await
            .map_err(aws("DescribeImages"))?;
        Ok(out.images().iter().map(image_from).collect())
    }

    async fn create_image(&self, r: &CreateImageRequest) -> Result<String> {
        let out = self
            .client
            .create_image()
            .instance_id(&r.instance_id)
            .name(&r.name)
            .description(&r.description)
            .no_reboot(r.no_reboot)
            .tag_specifications(tag_spec(t::ResourceType::Image, &r.image_tags))
            .send()
            .await
            .map_err(aws("CreateImage"))?;
        Ok(out.image_id().unwrap_or_default().to_owned())
    }

    async fn deregister_image(&self, image_id: &str) -> Result<()> {
        self.client.deregister_image().image_id(image_id).send().await.map_err(aws("DeregisterImage"))?;
        Ok(())
    }

    async fn snapshots(&self, snapshot_ids: &[String]) -> Result<Vec<Snapshot>> {
        if snapshot_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_snapshots()
            .set_snapshot_ids(Some(snapshot_ids.to_vec()))
            .send()
            .await
            .map_err(aws("DescribeSnapshots"));
        let out = match out {
            Ok(out) => out,
            // One of them is gone (a delete cut short): ask for each alone.
            Err(e) if e.is("InvalidSnapshot.NotFound") && snapshot_ids.len() > 1 => {
                let mut found = Vec::new();
                for id in snapshot_ids {
                    found.extend(Box::pin(self.snapshots(std::slice::from_ref(id))).await?);
                }
                return Ok(found);
            }
            Err(e) if e.is("InvalidSnapshot.NotFound") => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        Ok(out.snapshots().iter().map(snapshot_from).collect())
    }

    async fn own_snapshots_tagged(&self, key: &str, value: &str) -> Result<Vec<Snapshot>> {
        let out = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .filters(filter(&format!("tag:{key}"), &[value]))
            .send()
            .await
            .map_err(aws("DescribeSnapshots"))?;
        Ok(out.snapshots().iter().map(snapshot_from).collect())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.client.delete_snapshot().snapshot_id(snapshot_id).send().await.map_err(aws("DeleteSnapshot"))?;
        Ok(())
    }

    async fn default_vpc(&self) -> Result<Option<String>> {
        let out = self
            .client
            .describe_vpcs()
            .filters(filter("is-default", &["true"]))
            .send()
            .await
            .map_err(aws("DescribeVpcs"))?;
        Ok(out.vpcs().first().and_then(|v| v.vpc_id()).map(str::to_owned))
    }

    async fn subnet(&self, subnet_id: &str) -> Result<Option<Subnet>> {
        match self.client.describe_subnets().subnet_ids(subnet_id).send().await {
            Ok(out) => Ok(out.subnets().first().map(subnet_from)),
            Err(e) => {
                let e = aws("DescribeSubnets")(e);
                if e.code.as_deref().is_some_and(|c| c.starts_with("InvalidSubnetID")) {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>> {
        let out = self
            .client
            .describe_subnets()
            .filters(filter("vpc-id", &[vpc_id]))
            .send()
            .await
            .map_err(aws("DescribeSubnets"))?;
        Ok(out.subnets().iter().map(subnet_from).collect())
    }

    async fn security_group(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter("vpc-id", &[vpc_id]))
            .filters(filter("group-name", &[name]))
            .send()
            .await
            .map_err(aws("DescribeSecurityGroups"))?;
        Ok(out.security_groups().first().map(group_from))
    }

    async fn managed_security_groups(&self, name: &str) -> Result<Vec<SecurityGroup>> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter(&format!("tag:{}", tags::MANAGED), &["true"]))
            .filters(filter(&format!("tag:{}", tags::SERVER_NAME), &[name]))
            .send()
            .await
            .map_err(aws("DescribeSecurityGroups"))?;
        Ok(out.security_groups().iter().map(group_from).collect())
    }

    async fn security_groups_tagged(&self, key: &str, value: &str) -> Result<Vec<SecurityGroup>> {
        let out = self
            .client
            .describe_security_groups()
            .filters(filter(&format!("tag:{}", tags::MANAGED), &["true"]))
            .filters(filter(&format!("tag:{key}"), &[value]))
            .send()
            .await
            .map_err(aws("DescribeSecurityGroups"))?;
        Ok(out.security_groups().iter().map(group_from).collect())
    }

    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>> {
        // StartTime now: only the current price of each zone.
        let out = self
            .client
            .describe_spot_price_history()
            .instance_types(t::InstanceType::from(instance_type))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_sdk_ec2::primitives::DateTime::from(std::time::SystemTime::now()))
            .send()
            .await
            .map_err(aws("DescribeSpotPriceHistory"))?;
        Ok(out
            .spot_price_history()
            .iter()
            .filter_map(|p| p.spot_price()?.parse::<f64>().ok())
            .min_by(|a, b| a.total_cmp(b)))
    }

    async fn default_security_group(&self, vpc_id: &str) -> Result<Option<String>> {
        Ok(self.security_group(vpc_id, "default").await?.map(|g| g.id))
    }

    async fn create_security_group(&self, vpc_id: &str, name: &str, description: &str, tags: &[Tag]) -> Result<String> {
        let out = self
            .client
            .create_security_group()
            .vpc_id(vpc_id)
            .group_name(name)
            .description(description)
            .tag_specifications(tag_spec(t::ResourceType::SecurityGroup, tags))
            .send()
            .await
            .map_err(aws("CreateSecurityGroup"))?;
        Ok(out.group_id().unwrap_or_default().to_owned())
    }

    async fn authorize_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()> {
        // All rules in one call (one round trip). If any already exists the
        // whole call fails with InvalidPermission.Duplicate and adds nothing
        // (a concurrent run got there first): then add them one by one,
        // skipping the duplicates.
        match self.authorize(group_id, rules).await {
            Err(e) if e.is("InvalidPermission.Duplicate") && rules.len() > 1 => {}
            Err(e) if e.is("InvalidPermission.Duplicate") => return Ok(()),
            other => return other.map_err(Into::into),
        }
        for rule in rules {
            match self.authorize(group_id, std::slice::from_ref(rule)).await {
                Ok(()) => {}
                Err(e) if e.is("InvalidPermission.Duplicate") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn revoke_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()> {
        // One call per rule: a rule already gone fails its own call only.
        for rule in rules {
            let req = self.client.revoke_security_group_ingress().group_id(group_id).ip_permissions(permission(rule));
            match req.send().await.map_err(aws("RevokeSecurityGroupIngress")) {
                Ok(_) => {}
                Err(e) if e.is("InvalidPermission.NotFound") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn delete_security_group(&self, group_id: &str) -> Result<()> {
        self.client.delete_security_group().group_id(group_id).send().await.map_err(aws("DeleteSecurityGroup"))?;
        Ok(())
    }

    async fn key_pair(&self, name: &str) -> Result<Option<KeyPair>> {
        let out = self
            .client
            .describe_key_pairs()
            .filters(filter("key-name", &[name]))
            .send()
            .await
            .map_err(aws("DescribeKeyPairs"))?;
        Ok(out.key_pairs().first().map(|k| KeyPair {
            id: k.key_pair_id().unwrap_or_default().to_owned(),
            name: k.key_name().unwrap_or_default().to_owned(),
        }))
    }

    async fn import_key_pair(&self, name: &str, public_key: &str, tags: &[Tag]) -> Result<KeyPair> {
        let out = self
            .client
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public_key.as_bytes()))
            .tag_specifications(tag_spec(t::ResourceType::KeyPair, tags))
            .send()
            .await
            .map_err(aws("ImportKeyPair"))?;
        Ok(KeyPair {
            id: out.key_pair_id().unwrap_or_default().to_owned(),
            name: out.key_name().unwrap_or(name).to_owned(),
        })
    }

    async fn delete_key_pair(&self, key_pair: &KeyPair) -> Result<()> {
        // By name: names are unique per region, and every EC2 implementation
        // (moto included) accepts it, while some ignore KeyPairId.
        self.client.delete_key_pair().key_name(&key_pair.name).send().await.map_err(aws("DeleteKeyPair"))?;
        Ok(())
    }

    async fn find_instances(&self, name: Option<&str>) -> Result<Vec<Instance>> {
        let mut req =
            self.client.describe_instances().filters(filter(&format!("tag:{}", tags::MANAGED), &["true"])).filters(
                filter("instance-state-name", &["pending", "running", "stopping", "stopped", "shutting-down"]),
            );
        if let Some(name) = name {
            req = req.filters(filter(&format!("tag:{}", tags::SERVER_NAME), &[name]));
        }
        let mut instances = Vec::new();
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("DescribeInstances"))?;
            for r in page.reservations() {
                instances.extend(r.instances().iter().map(instance_from));
            }
        }
        Ok(instances)
    }

    async fn instance(&self, instance_id: &str) -> Result<Option<Instance>> {
        match self.client.describe_instances().instance_ids(instance_id).send().await {
            Ok(out) => Ok(out.reservations().iter().flat_map(|r| r.instances()).next().map(instance_from)),
            Err(e) => {
                let e = aws("DescribeInstances")(e);
                // Eventual consistency: a just-launched id can be unknown briefly.
                if e.is("InvalidInstanceID.NotFound") { Ok(None) } else { Err(e.into()) }
            }
        }
    }

    async fn run_instance(&self, r: &RunInstancesRequest) -> Result<Instance> {
        let mut req = self
            .client
            .run_instances()
            .image_id(&r.image_id)
            .instance_type(t::InstanceType::from(r.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .key_name(&r.key_name)
            .subnet_id(&r.subnet_id)
            .client_token(&r.client_token)
            .block_device_mappings(
                t::BlockDeviceMapping::builder()
                    .device_name(&r.root_device_name)
                    .ebs(
                        t::EbsBlockDevice::builder()
                            .encrypted(r.encrypted)
                            .set_kms_key_id(r.kms_key_id.clone())
                            .volume_size(r.volume_size_gib)
                            .volume_type(t::VolumeType::from(r.volume_type.as_str()))
                            .set_throughput(r.volume_throughput_mibps)
                            .set_iops(r.volume_iops)
                            .delete_on_termination(r.delete_on_termination)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                t::InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(t::InstanceMetadataEndpointState::Enabled)
                    .http_tokens(t::HttpTokensState::Required)
                    .http_put_response_hop_limit(r.metadata_hop_limit)
                    .build(),
            )
            .tag_specifications(tag_spec(t::ResourceType::Instance, &r.instance_tags))
            .tag_specifications(tag_spec(t::ResourceType::Volume, &r.volume_tags));
        for g in &r.security_group_ids {
            req = req.security_group_ids(g);
        }
        if r.shutdown_terminates {
            req = req.instance_initiated_shutdown_behavior(t::ShutdownBehavior::Terminate);
        }
        if r.spot {
            req = req.instance_market_options(
                t::InstanceMarketOptionsRequest::builder()
                    .market_type(t::MarketType::Spot)
                    .spot_options(
                        t::SpotMarketOptions::builder()
                            .spot_instance_type(t::SpotInstanceType::OneTime)
                            .instance_interruption_behavior(t::InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(data) = &r.user_data {
            req = req.user_data(aws_smithy_types::base64::encode(data));
        }
        let out = req.send().await.map_err(aws("RunInstances"))?;
        let instance = out.instances().first().map(instance_from).ok_or_else(|| AwsError {
            action: "RunInstances",
            code: None,
            message: "the response listed no instance".into(),
        })?;
        Ok(instance)
    }

    async fn set_instance_security_groups(&self, instance_id: &str, group_ids: &[String]) -> Result<()> {
        let mut req = self.client.modify_instance_attribute().instance_id(instance_id);
        for g in group_ids {
            req = req.groups(g);
        }
        req.send().await.map_err(aws("ModifyInstanceAttribute"))?;
        Ok(())
    }

    async fn shutdown_terminates(&self, instance_id: &str) -> Result<bool> {
        let out = self
            .client
            .describe_instance_attribute()
            .instance_id(instance_id)
            .attribute(t::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
            .send()
            .await
            .map_err(aws("DescribeInstanceAttribute"))?;
        Ok(out.instance_initiated_shutdown_behavior().and_then(|v| v.value()) == Some("terminate"))
    }

    async fn set_shutdown_terminates(&self, instance_id: &str) -> Result<()> {
        self.set_shutdown_behavior(instance_id, "terminate").await
    }

    async fn set_shutdown_stops(&self, instance_id: &str) -> Result<()> {
        self.set_shutdown_behavior(instance_id, "stop").await
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<()> {
        self.client.terminate_instances().instance_ids(instance_id).send().await.map_err(aws("TerminateInstances"))?;
        Ok(())
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<()> {
        self.client.stop_instances().instance_ids(instance_id).send().await.map_err(aws("StopInstances"))?;
        Ok(())
    }

    async fn start_instance(&self, instance_id: &str) -> Result<()> {
        self.client.start_instances().instance_ids(instance_id).send().await.map_err(aws("StartInstances"))?;
        Ok(())
    }

    async fn volumes(&self, volume_ids: &[String]) -> Result<Vec<Volume>> {
        if volume_ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .client
            .describe_volumes()
            .set_volume_ids(Some(volume_ids.to_vec()))
            .send()
            .await
            .map_err(aws("DescribeVolumes"))?;
        Ok(out
            .volumes()
            .iter()
            .map(|v| Volume {
                id: v.volume_id().unwrap_or_default().to_owned(),
                size_gib: v.size().unwrap_or_default(),
                volume_type: v.volume_type().map(|t| t.as_str().to_owned()).unwrap_or_default(),
                iops: v.iops(),
                throughput_mibps: v.throughput(),
            })
            .collect())
    }

    async fn lock_instance_metadata(&self, instance_id: &str) -> Result<()> {
        self.client
            .modify_instance_metadata_options()
            .instance_id(instance_id)
            .http_endpoint(t::InstanceMetadataEndpointState::Enabled)
            .http_tokens(t::HttpTokensState::Required)
            .http_put_response_hop_limit(1)
            .send()
            .await
            .map_err(aws("ModifyInstanceMetadataOptions"))?;
        Ok(())
    }

    async fn account_id(&self) -> Result<String> {
        let id = self
            .account
            .get_or_try_init(|| async {
                let out = self.sts.get_caller_identity().send().await.map_err(aws("GetCallerIdentity"))?;
                out.account().map(str::to_owned).ok_or_else(|| AwsError {
                    action: "GetCallerIdentity",
                    code: None,
                    message: "the answer named no account".into(),
                })
            })
            .await?;
        Ok(id.clone())
    }

    fn region(&self) -> String {
        self.region.clone()
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<()> {
        let mut req = self.client.create_tags();
        for id in resource_ids {
            req = req.resources(id);
        }
        for tag in tags {
            req = req.tags(t::Tag::builder().key(&tag.key).value(&tag.value).build());
        }
        req.send().await.map_err(aws("CreateTags"))?;
        Ok(())
    }

    async fn addresses(&self, instance_id: &str) -> Result<Vec<Address>> {
        self.describe_addresses(vec![filter("instance-id", &[instance_id])]).await
    }

    async fn managed_addresses(&self, name: &str) -> Result<Vec<Address>> {
        self.describe_addresses(vec![
            filter(&format!("tag:{}", tags::MANAGED), &["true"]),
            filter(&format!("tag:{}", tags::SERVER_NAME), &[name]),
        ])
        .await
    }

    async fn allocate_address(&self, address_tags: &[Tag]) -> Result<Address> {
        let out = self
            .client
            .allocate_address()
            .domain(t::DomainType::Vpc)
            .tag_specifications(tag_spec(t::ResourceType::ElasticIp, address_tags))
            .send()
            .await
            .map_err(aws("AllocateAddress"))?;
        Ok(Address {
            allocation_id: out.allocation_id().unwrap_or_default().to_owned(),
            association_id: None,
            public_ip: out.public_ip().unwrap_or_default().to_owned(),
            instance_id: None,
            domain: tags::value_of(address_tags, tags::DOMAIN),
            managed_for: tags::value_of(address_tags, tags::SERVER_NAME),
        })
    }

    async fn associate_address(&self, allocation_id: &str, instance_id: &str) -> Result<String> {
        let out = self
            .client
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            .send()
            .await
            .map_err(aws("AssociateAddress"))?;
        Ok(out.association_id().unwrap_or_default().to_owned())
    }

    async fn release_address(&self, address: &Address) -> Result<()> {
        if let Some(assoc) = &address.association_id {
            self.client
                .disassociate_address()
                .association_id(assoc)
                .send()
                .await
                .map_err(aws("DisassociateAddress"))?;
        }
        self.client
            .release_address()
            .allocation_id(&address.allocation_id)
            .send()
            .await
            .map_err(aws("ReleaseAddress"))?;
        Ok(())
    }
}

fn record_set_from(r: &r53::ResourceRecordSet) -> RecordSet {
    RecordSet {
        name: r.name().to_owned(),
        kind: r.r#type().as_str().to_owned(),
        ttl: r.ttl(),
        values: r.resource_records().iter().map(|v| v.value().to_owned()).collect(),
        alias: r
            .alias_target()
            .map(|a| AliasTarget { zone_id: a.hosted_zone_id().to_owned(), dns_name: crate::dns::fqdn(a.dns_name()) }),
    }
}

/// The SDK's form of a change; its builders fail only on a missing required
/// field, which every change here has.
fn change_to_sdk(c: &RecordChange) -> std::result::Result<r53::Change, aws_smithy_types::error::operation::BuildError> {
    let mut record =
        r53::ResourceRecordSet::builder().name(&c.record.name).r#type(r53::RrType::from(c.record.kind.as_str()));
    if let Some(ttl) = c.record.ttl {
        record = record.ttl(ttl);
    }
    for value in &c.record.values {
        record = record.resource_records(r53::ResourceRecord::builder().value(value).build()?);
    }
    if let Some(alias) = &c.record.alias {
        // Whether the balancer has a healthy target is the balancer's
        // business: it answers 503 itself rather than vanish from DNS.
        record = record.alias_target(
            r53::AliasTarget::builder()
                .hosted_zone_id(&alias.zone_id)
                .dns_name(&alias.dns_name)
                .evaluate_target_health(false)
                .build()?,
        );
    }
    let action = match c.action {
        ChangeAction::Upsert => r53::ChangeAction::Upsert,
        ChangeAction::Delete => r53::ChangeAction::Delete,
    };
    r53::Change::builder().action(action).resource_record_set(record.build()?).build()
}

/// A request the SDK refused to build: a bug here, reported as the action's failure.
pub(crate) fn unbuildable(
    action: &'static str,
) -> impl FnOnce(aws_smithy_types::error::operation::BuildError) -> AwsError {
    move |e| AwsError { action, code: None, message: format!("the request could not be built: {e}") }
}

impl Route53Api for SdkApi {
    async fn hosted_zones(&self) -> Result<Vec<HostedZone>> {
        let mut zones = Vec::new();
        let mut pages = self.route53.list_hosted_zones().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("route53:ListHostedZones"))?;
            zones.extend(page.hosted_zones().iter().map(|z| HostedZone {
                id: z.id().to_owned(),
                name: z.name().to_owned(),
                private: z.config().is_some_and(|c| c.private_zone()),
            }));
        }
        Ok(zones)
    }

    async fn record_sets(&self, zone_id: &str, name: &str) -> Result<Vec<RecordSet>> {
        // Listed in name order from `name`: its own record sets come first.
        let out = self
            .route53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name)
            .max_items(100)
            .send()
            .await
            .map_err(aws("route53:ListResourceRecordSets"))?;
        Ok(out
            .resource_record_sets()
            .iter()
            .map(record_set_from)
            .filter(|r| crate::dns::same_name(&r.name, name))
            .collect())
    }

    async fn change_record_sets(&self, zone_id: &str, comment: &str, changes: &[RecordChange]) -> Result<String> {
        const ACTION: &str = "route53:ChangeResourceRecordSets";
        let changes = changes
            .iter()
            .map(change_to_sdk)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(unbuildable(ACTION))?;
        let batch = r53::ChangeBatch::builder()
            .comment(comment)
            .set_changes(Some(changes))
            .build()
            .map_err(unbuildable(ACTION))?;
        let out = self
            .route53
            .change_resource_record_sets()
            .hosted_zone_id(zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(aws(ACTION))?;
        Ok(out.change_info().map(|c| c.id().to_owned()).unwrap_or_default())
    }

    async fn change_in_sync(&self, change_id: &str) -> Result<bool> {
        let out = self.route53.get_change().id(change_id).send().await.map_err(aws("route53:GetChange"))?;
        Ok(out.change_info().is_some_and(|c| *c.status() == r53::ChangeStatus::Insync))
    }
}

impl PriceListApi for SdkApi {
    async fn products(&self, service_code: &str, filters: &[(&str, &str)]) -> Result<Vec<String>> {
        use aws_sdk_pricing::types::{Filter, FilterType};
        const ACTION: &str = "pricing:GetProducts";
        let mut req = self.pricing.get_products().service_code(service_code).format_version("aws_v1").max_results(100);
        for (field, value) in filters {
            let filter =
                Filter::builder().r#type(FilterType::TermMatch).field(*field).value(*value).build().map_err(|e| {
                    AwsError { action: ACTION, code: None, message: format!("filter {field}={value}: {e}") }
                })?;
            req = req.filters(filter);
        }
        // One page: the filters name one product (and its few variants).
        let out = req.send().await.map_err(|err| {
            let code = err.code().map(str::to_owned);
            // Said in a few words in the estimate, so no SDK error chain.
            let message = match (&err, &code) {
                (_, Some(_)) => err.message().unwrap_or_default().to_owned(),
                (SdkError::TimeoutError(_), None) => "no answer in time".to_owned(),
                (SdkError::DispatchFailure(_), None) => "no answer (no connection)".to_owned(),
                (_, None) => match err.raw_response() {
                    Some(r) => format!("an answer it could not read (HTTP {})", r.status().as_u16()),
                    None => "no answer".to_owned(),
                },
            };
            tracing::debug!(action = ACTION, ?code, %message, error = %DisplayErrorContext(&err), "aws error");
            AwsError { action: ACTION, code, message }
        })?;
        Ok(out.price_list().to_vec())
    }
}
