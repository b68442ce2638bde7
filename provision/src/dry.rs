//! [`Ec2Api`] and [`Route53Api`] for `--dry-run`: prints every call with its parameters and makes
//! none. Needs no credentials and no network; where a real run would learn
//! something from a look-up, it answers with a `<placeholder>` that says what.

use serde_json::{Value, json};

use crate::api::*;
use crate::{Result, tags};

pub struct DryRunApi {
    print: Box<dyn Fn(&str) + Send + Sync>,
}

impl DryRunApi {
    /// `print` receives one line per call, e.g.
    /// `ec2:DescribeVpcs {"Filters":[{"Name":"is-default","Values":["true"]}]}`.
    pub fn new(print: impl Fn(&str) + Send + Sync + 'static) -> Self {
        DryRunApi { print: Box::new(print) }
    }

    fn call(&self, action: &str, params: Value) {
        self.service_call("ec2", action, params);
    }

    fn service_call(&self, service: &str, action: &str, params: Value) {
        (self.print)(&format!("{service}:{action} {params}"));
    }
}

fn filters(pairs: &[(&str, &str)]) -> Value {
    // A comma in a value separates several values of one filter.
    Value::Array(pairs.iter().map(|(n, v)| json!({"Name": n, "Values": v.split(',').collect::<Vec<_>>()})).collect())
}

/// One rule as EC2's IpPermission.
fn permission(rule: &IngressRule) -> Value {
    let mut perm = json!({"IpProtocol": "tcp", "FromPort": rule.port, "ToPort": rule.port});
    let range = if rule.is_ipv6() {
        ("Ipv6Ranges", json!([{"CidrIpv6": rule.cidr}]))
    } else {
        ("IpRanges", json!([{"CidrIp": rule.cidr}]))
    };
    perm[range.0] = range.1;
    perm
}

fn tags_json(tags: &[Tag]) -> Value {
    Value::Array(tags.iter().map(|t| json!({"Key": t.key, "Value": t.value})).collect())
}

fn tag_json(resource: &str, tags: &[Tag]) -> Value {
    json!({"ResourceType": resource, "Tags": tags_json(tags)})
}

impl Ec2Api for DryRunApi {
    fn is_dry_run(&self) -> bool {
        true
    }

    async fn find_images(&self, owner: &str, name_pattern: &str) -> Result<Vec<Image>> {
        self.call(
            "DescribeImages",
            json!({
                "Owners": [owner],
                "Filters": filters(&[("name", name_pattern), ("architecture", "x86_64"), ("state", "available")]),
            }),
        );
        Ok(vec![Image {
            id: format!("<newest AMI named {name_pattern}>"),
            name: name_pattern.to_owned(),
            creation_date: String::new(),
            root_device_name: "<the AMI's root device name>".into(),
            state: "available".into(),
            owner_id: owner.to_owned(),
            tags: vec![],
            snapshot_ids: vec![],
        }])
    }

    async fn image(&self, image_id: &str) -> Result<Option<Image>> {
        self.call("DescribeImages", json!({"ImageIds": [image_id]}));
        Ok(Some(Image {
            id: image_id.to_owned(),
            name: String::new(),
            creation_date: String::new(),
            root_device_name: "<the AMI's root device name>".into(),
            state: "available".into(),
            owner_id: "<its owner>".into(),
            tags: vec![],
            snapshot_ids: vec![],
        }))
    }

    async fn own_images(&self, filter_name: &str, value: &str) -> Result<Vec<Image>> {
        self.call("DescribeImages", json!({"Owners": ["self"], "Filters": filters(&[(filter_name, value)])}));
        // None yet: the dry run shows the path that makes one.
        Ok(vec![])
    }

    async fn create_image(&self, r: &CreateImageRequest) -> Result<String> {
        self.call(
            "CreateImage",
            json!({
                "InstanceId": r.instance_id,
                "Name": r.name,
                "Description": r.description,
                "NoReboot": r.no_reboot,
                "TagSpecifications": [tag_json("image", &r.image_tags)],
            }),
        );
        Ok("<new image id>".into())
    }

    async fn deregister_image(&self, image_id: &str) -> Result<()> {
        self.call("DeregisterImage", json!({"ImageId": image_id}));
        Ok(())
    }

    async fn snapshots(&self, snapshot_ids: &[String]) -> Result<Vec<Snapshot>> {
        self.call("DescribeSnapshots", json!({"SnapshotIds": snapshot_ids}));
        Ok(vec![])
    }

    async fn own_snapshots_tagged(&self, key: &str, value: &str) -> Result<Vec<Snapshot>> {
        self.call(
            "DescribeSnapshots",
            json!({"OwnerIds": ["self"], "Filters": [{"Name": format!("tag:{key}"), "Values": [value]}]}),
        );
        Ok(vec![])
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<()> {
        self.call("DeleteSnapshot", json!({"SnapshotId": snapshot_id}));
        Ok(())
    }

    async fn default_vpc(&self) -> Result<Option<String>> {
        self.call("DescribeVpcs", json!({"Filters": filters(&[("is-default", "true")])}));
        Ok(Some("<default VPC id>".into()))
    }

    async fn subnet(&self, subnet_id: &str) -> Result<Option<Subnet>> {
        self.call("DescribeSubnets", json!({"SubnetIds": [subnet_id]}));
        Ok(Some(Subnet {
            id: subnet_id.to_owned(),
            vpc_id: format!("<VPC of {subnet_id}>"),
            availability_zone: format!("<zone of {subnet_id}>"),
            default_for_az: false,
        }))
    }

    async fn subnets(&self, vpc_id: &str) -> Result<Vec<Subnet>> {
        self.call("DescribeSubnets", json!({"Filters": filters(&[("vpc-id", vpc_id)])}));
        Ok(vec![Subnet {
            id: "<first subnet of the VPC, by zone>".into(),
            vpc_id: vpc_id.to_owned(),
            availability_zone: "<its zone>".into(),
            default_for_az: true,
        }])
    }

    async fn security_group(&self, vpc_id: &str, name: &str) -> Result<Option<SecurityGroup>> {
        self.call("DescribeSecurityGroups", json!({"Filters": filters(&[("vpc-id", vpc_id), ("group-name", name)])}));
        // Pretend it is absent so the dry run shows the whole creation path.
        Ok(None)
    }

    async fn managed_security_groups(&self, name: &str) -> Result<Vec<SecurityGroup>> {
        self.call(
            "DescribeSecurityGroups",
            json!({"Filters": filters(&[("tag:image-provision:managed", "true"), ("tag:image-provision:name", name)])}),
        );
        Ok(vec![])
    }

    async fn security_groups_tagged(&self, key: &str, value: &str) -> Result<Vec<SecurityGroup>> {
        let tag = format!("tag:{key}");
        self.call(
            "DescribeSecurityGroups",
            json!({"Filters": filters(&[("tag:image-provision:managed", "true"), (tag.as_str(), value)])}),
        );
        Ok(vec![])
    }

    async fn spot_price(&self, instance_type: &str) -> Result<Option<f64>> {
        self.call(
            "DescribeSpotPriceHistory",
            json!({"InstanceTypes": [instance_type], "ProductDescriptions": ["Linux/UNIX"], "StartTime": "<now>"}),
        );
        Ok(None)
    }

    async fn default_security_group(&self, vpc_id: &str) -> Result<Option<String>> {
        self.call(
            "DescribeSecurityGroups",
            json!({"Filters": filters(&[("vpc-id", vpc_id), ("group-name", "default")])}),
        );
        Ok(Some("<default security group id>".into()))
    }

    async fn create_security_group(&self, vpc_id: &str, name: &str, description: &str, tags: &[Tag]) -> Result<String> {
        self.call(
            "CreateSecurityGroup",
            json!({
                "VpcId": vpc_id,
                "GroupName": name,
                "Description": description,
                "TagSpecifications": [tag_json("security-group", tags)],
            }),
        );
        Ok("<new security group id>".into())
    }

    async fn authorize_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()> {
        let perms: Vec<Value> = rules.iter().map(permission).collect();
        self.call("AuthorizeSecurityGroupIngress", json!({"GroupId": group_id, "IpPermissions": perms}));
        Ok(())
    }

    async fn revoke_ingress(&self, group_id: &str, rules: &[IngressRule]) -> Result<()> {
        for rule in rules {
            self.call("RevokeSecurityGroupIngress", json!({"GroupId": group_id, "IpPermissions": [permission(rule)]}));
        }
        Ok(())
    }

    async fn delete_security_group(&self, group_id: &str) -> Result<()> {
        self.call("DeleteSecurityGroup", json!({"GroupId": group_id}));
        Ok(())
    }

    async fn key_pair(&self, name: &str) -> Result<Option<KeyPair>> {
        self.call("DescribeKeyPairs", json!({"Filters": filters(&[("key-name", name)])}));
        Ok(None)
    }

    async fn import_key_pair(&self, name: &str, public_key: &str, tags: &[Tag]) -> Result<KeyPair> {
        self.call(
            "ImportKeyPair",
            json!({
                "KeyName": name,
                "PublicKeyMaterial": public_key,
                "TagSpecifications": [tag_json("key-pair", tags)],
            }),
        );
        Ok(KeyPair { id: "<new key pair id>".into(), name: name.to_owned() })
    }

    async fn delete_key_pair(&self, key_pair: &KeyPair) -> Result<()> {
        self.call("DeleteKeyPair", json!({"KeyName": key_pair.name}));
        Ok(())
    }

    async fn find_instances(&self, name: Option<&str>) -> Result<Vec<Instance>> {
        let mut f = vec![
            ("tag:image-provision:managed", "true"),
            ("instance-state-name", "pending,running,stopping,stopped,shutting-down"),
        ];
        if let Some(name) = name {
            f.push(("tag:image-provision:name", name));
        }
        self.call("DescribeInstances", json!({"Filters": filters(&f)}));
        Ok(vec![])
    }

    async fn instance(&self, instance_id: &str) -> Result<Option<Instance>> {
        self.call("DescribeInstances", json!({"InstanceIds": [instance_id]}));
        Ok(None)
    }

    async fn run_instance(&self, r: &RunInstancesRequest) -> Result<Instance> {
        let mut params = json!({
            "ImageId": r.image_id,
            "InstanceType": r.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "KeyName": r.key_name,
            "SecurityGroupIds": r.security_group_ids,
            "SubnetId": r.subnet_id,
            "ClientToken": r.client_token,
            "BlockDeviceMappings": [{
                "DeviceName": r.root_device_name,
                "Ebs": {"VolumeSize": r.volume_size_gib, "VolumeType": r.volume_type, "DeleteOnTermination": r.delete_on_termination},
            }],
            "TagSpecifications": [tag_json("instance", &r.instance_tags), tag_json("volume", &r.volume_tags)],
        });
        let ebs = params["BlockDeviceMappings"][0]["Ebs"].as_object_mut().unwrap();
        if let Some(t) = r.volume_throughput_mibps {
            ebs.insert("Throughput".into(), json!(t));
        }
        if let Some(i) = r.volume_iops {
            ebs.insert("Iops".into(), json!(i));
        }
        ebs.insert("Encrypted".into(), json!(r.encrypted));
        ebs.insert(
            "KmsKeyId".into(),
            json!(r.kms_key_id.as_deref().unwrap_or("<the account's default EBS key (aws/ebs)>")),
        );
        let p = params.as_object_mut().unwrap();
        p.insert(
            "MetadataOptions".into(),
            json!({"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": r.metadata_hop_limit}),
        );
        if r.shutdown_terminates {
            p.insert("InstanceInitiatedShutdownBehavior".into(), json!("terminate"));
        }
        if r.spot {
            p.insert(
                "InstanceMarketOptions".into(),
                json!({"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}),
            );
        }
        if r.user_data.is_some() {
            p.insert("UserData".into(), json!("<cloud-init user data, base64>"));
        }
        self.call("RunInstances", params);
        Ok(Instance {
            id: "<new instance id>".into(),
            name: String::new(),
            state: "pending".into(),
            instance_type: r.instance_type.clone(),
            public_ip: None,
            ipv6_address: None,
            launch_time: None,
            expires_at: None,
            vpc_id: None,
            availability_zone: None,
            security_group_ids: r.security_group_ids.clone(),
            key_name: Some(r.key_name.clone()),
            image_id: Some(r.image_id.clone()),
            volume_ids: Vec::new(),
            domain: tags::value_of(&r.instance_tags, tags::DOMAIN),
            webui_domain: tags::value_of(&r.instance_tags, tags::WEBUI_DOMAIN),
            imds_locked: true,
            autostop: tags::value_of(&r.instance_tags, tags::AUTOSTOP),
            fleet: tags::value_of(&r.instance_tags, tags::FLEET),
        })
    }

    async fn set_instance_security_groups(&self, instance_id: &str, group_ids: &[String]) -> Result<()> {
        self.call("ModifyInstanceAttribute", json!({"InstanceId": instance_id, "Groups": group_ids}));
        Ok(())
    }

    async fn shutdown_terminates(&self, instance_id: &str) -> Result<bool> {
        self.call(
            "DescribeInstanceAttribute",
            json!({"InstanceId": instance_id, "Attribute": "instanceInitiatedShutdownBehavior"}),
        );
        Ok(false)
    }

    async fn set_shutdown_terminates(&self, instance_id: &str) -> Result<()> {
        self.call(
            "ModifyInstanceAttribute",
            json!({"InstanceId": instance_id, "Attribute": "instanceInitiatedShutdownBehavior", "Value": "terminate"}),
        );
        Ok(())
    }

    async fn set_shutdown_stops(&self, instance_id: &str) -> Result<()> {
        self.call(
            "ModifyInstanceAttribute",
            json!({"InstanceId": instance_id, "Attribute": "instanceInitiatedShutdownBehavior", "Value": "stop"}),
        );
        Ok(())
    }

    async fn terminate_instance(&self, instance_id: &str) -> Result<()> {
        self.call("TerminateInstances", json!({"InstanceIds": [instance_id]}));
        Ok(())
    }

    async fn stop_instance(&self, instance_id: &str) -> Result<()> {
        self.call("StopInstances", json!({"InstanceIds": [instance_id]}));
        Ok(())
    }

    async fn start_instance(&self, instance_id: &str) -> Result<()> {
        self.call("StartInstances", json!({"InstanceIds": [instance_id]}));
        Ok(())
    }

    async fn volumes(&self, volume_ids: &[String]) -> Result<Vec<Volume>> {
        self.call("DescribeVolumes", json!({"VolumeIds": volume_ids}));
        Ok(Vec::new())
    }

    async fn lock_instance_metadata(&self, instance_id: &str) -> Result<()> {
        self.call(
            "ModifyInstanceMetadataOptions",
            json!({"InstanceId": instance_id, "HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1}),
        );
        Ok(())
    }

    async fn account_id(&self) -> Result<String> {
        self.service_call("sts", "GetCallerIdentity", json!({}));
        Ok("<account id>".into())
    }

    fn region(&self) -> String {
        "<region>".into()
    }

    async fn create_tags(&self, resource_ids: &[String], tags: &[Tag]) -> Result<()> {
        self.call("CreateTags", json!({"Resources": resource_ids, "Tags": tags_json(tags)}));
        Ok(())
    }

    async fn addresses(&self, instance_id: &str) -> Result<Vec<Address>> {
        self.call("DescribeAddresses", json!({"Filters": filters(&[("instance-id", instance_id)])}));
        Ok(vec![])
    }

    async fn managed_addresses(&self, name: &str) -> Result<Vec<Address>> {
        self.call(
            "DescribeAddresses",
            json!({"Filters": filters(&[("tag:image-provision:managed", "true"), ("tag:image-provision:name", name)])}),
        );
        Ok(vec![])
    }

    async fn allocate_address(&self, address_tags: &[Tag]) -> Result<Address> {
        self.call(
            "AllocateAddress",
            json!({"Domain": "vpc", "TagSpecifications": [tag_json("elastic-ip", address_tags)]}),
        );
        Ok(Address {
            allocation_id: "<new allocation id>".into(),
            association_id: None,
            public_ip: "<new Elastic IP>".into(),
            instance_id: None,
            domain: tags::value_of(address_tags, tags::DOMAIN),
            managed_for: tags::value_of(address_tags, tags::SERVER_NAME),
        })
    }

    async fn associate_address(&self, allocation_id: &str, instance_id: &str) -> Result<String> {
        self.call("AssociateAddress", json!({"AllocationId": allocation_id, "InstanceId": instance_id}));
        Ok("<new association id>".into())
    }

    async fn release_address(&self, address: &Address) -> Result<()> {
        self.call("ReleaseAddress", json!({"AllocationId": address.allocation_id}));
        Ok(())
    }
}

impl PriceListApi for DryRunApi {
    async fn products(&self, service_code: &str, filters: &[(&str, &str)]) -> Result<Vec<String>> {
        let filters: Vec<Value> =
            filters.iter().map(|(f, v)| json!({"Type": "TERM_MATCH", "Field": f, "Value": v})).collect();
        self.service_call(
            "pricing",
            "GetProducts",
            json!({"ServiceCode": service_code, "FormatVersion": "aws_v1", "Filters": filters}),
        );
        // No answer in a dry run: the estimate uses the shipped table.
        Ok(Vec::new())
    }
}

impl Route53Api for DryRunApi {
    async fn hosted_zones(&self) -> Result<Vec<HostedZone>> {
        self.service_call("route53", "ListHostedZones", json!({}));
        Ok(vec![HostedZone {
            id: "<the longest public zone holding the domain>".into(),
            name: "<its name>".into(),
            private: false,
        }])
    }

    async fn record_sets(&self, zone_id: &str, name: &str) -> Result<Vec<RecordSet>> {
        self.service_call(
            "route53",
            "ListResourceRecordSets",
            json!({"HostedZoneId": zone_id, "StartRecordName": name, "MaxItems": 100}),
        );
        Ok(vec![])
    }

    async fn change_record_sets(&self, zone_id: &str, comment: &str, changes: &[RecordChange]) -> Result<String> {
        let changes: Vec<Value> = changes
            .iter()
            .map(|c| {
                let mut record = json!({
                    "Name": c.record.name,
                    "Type": c.record.kind,
                    "ResourceRecords": c.record.values.iter().map(|v| json!({"Value": v})).collect::<Vec<_>>(),
                });
                if let Some(ttl) = c.record.ttl {
                    record["TTL"] = json!(ttl);
                }
                json!({"Action": c.action, "ResourceRecordSet": record})
            })
            .collect();
        self.service_call(
            "route53",
            "ChangeResourceRecordSets",
            json!({"HostedZoneId": zone_id, "ChangeBatch": {"Comment": comment, "Changes": changes}}),
        );
        Ok("<change id>".into())
    }

    async fn change_in_sync(&self, change_id: &str) -> Result<bool> {
        self.service_call("route53", "GetChange", json!({"Id": change_id}));
        Ok(true)
    }
}
