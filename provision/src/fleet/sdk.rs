//! [`BalancerApi`] over the real AWS SDK (Elastic Load Balancing v2, ACM).

use aws_sdk_acm::types as acm;
use aws_sdk_elasticloadbalancingv2::types as elb;

use super::api::*;
use crate::sdk::{aws, tags_from_pairs, unbuildable};
use crate::{Result, SdkApi, Tag};

/// DescribeTags takes at most 20 resources a call.
const TAGS_PER_CALL: usize = 20;

fn elb_tags(tags: &[Tag]) -> Vec<elb::Tag> {
    tags.iter().map(|t| elb::Tag::builder().key(&t.key).value(&t.value).build()).collect()
}

fn balancer_from(lb: &elb::LoadBalancer, tags: Vec<Tag>) -> LoadBalancer {
    LoadBalancer {
        arn: lb.load_balancer_arn().unwrap_or_default().to_owned(),
        name: lb.load_balancer_name().unwrap_or_default().to_owned(),
        dns_name: lb.dns_name().unwrap_or_default().to_owned(),
        canonical_zone_id: lb.canonical_hosted_zone_id().unwrap_or_default().to_owned(),
        state: lb.state().and_then(|s| s.code()).map(|c| c.as_str().to_owned()).unwrap_or_default(),
        vpc_id: lb.vpc_id().unwrap_or_default().to_owned(),
        tags,
    }
}

fn listener_from(l: &elb::Listener) -> Listener {
    let action = l.default_actions().first().and_then(|a| match a.r#type() {
        Some(elb::ActionTypeEnum::Forward) => {
            a.target_group_arn().map(|arn| ListenerAction::Forward { target_group_arn: arn.to_owned() })
        }
        Some(elb::ActionTypeEnum::Redirect) => Some(ListenerAction::RedirectToHttps),
        _ => None,
    });
    Listener {
        arn: l.listener_arn().unwrap_or_default().to_owned(),
        port: l.port().unwrap_or_default() as u16,
        protocol: l.protocol().map(|p| p.as_str().to_owned()).unwrap_or_default(),
        certificate_arn: l.certificates().first().and_then(|c| c.certificate_arn()).map(str::to_owned),
        action,
    }
}

fn certificate_from(c: &acm::CertificateDetail) -> Certificate {
    let validation_record = c
        .domain_validation_options()
        .iter()
        .find_map(|v| v.resource_record())
        .map(|r| (r.name().to_owned(), r.value().to_owned()));
    Certificate {
        arn: c.certificate_arn().unwrap_or_default().to_owned(),
        domain: c.domain_name().unwrap_or_default().to_owned(),
        status: c.status().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        validation_record,
        in_use_by: c.in_use_by().to_vec(),
        tags: Vec::new(),
    }
}

impl SdkApi {
    /// The tags of each resource (ARN), `TAGS_PER_CALL` at a time.
    async fn elb_tags_of(&self, arns: &[String]) -> Result<Vec<(String, Vec<Tag>)>> {
        let mut all = Vec::new();
        for chunk in arns.chunks(TAGS_PER_CALL) {
            let out = self
                .elb
                .describe_tags()
                .set_resource_arns(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(aws("elbv2:DescribeTags"))?;
            for d in out.tag_descriptions() {
                let tags = d.tags().iter().map(|t| (t.key(), t.value())).collect::<Vec<_>>();
                all.push((d.resource_arn().unwrap_or_default().to_owned(), tags_from_pairs(tags)));
            }
        }
        Ok(all)
    }

    async fn every_balancer(&self) -> Result<Vec<elb::LoadBalancer>> {
        let mut all = Vec::new();
        let mut pages = self.elb.describe_load_balancers().into_paginator().send();
        while let Some(page) = pages.next().await {
            all.extend(page.map_err(aws("elbv2:DescribeLoadBalancers"))?.load_balancers().iter().cloned());
        }
        Ok(all)
    }
}

/// Whether `tags` hold `key` = `value`.
fn tagged(tags: &[Tag], key: &str, value: &str) -> bool {
    tags.iter().any(|t| t.key == key && t.value == value)
}

impl BalancerApi for SdkApi {
    async fn load_balancers_tagged(&self, key: &str, value: &str) -> Result<Vec<LoadBalancer>> {
        let all = self.every_balancer().await?;
        let arns: Vec<String> = all.iter().filter_map(|lb| lb.load_balancer_arn().map(str::to_owned)).collect();
        let tags = self.elb_tags_of(&arns).await?;
        Ok(all
            .iter()
            .filter_map(|lb| {
                let arn = lb.load_balancer_arn()?;
                let (_, tags) = tags.iter().find(|(a, _)| a == arn)?;
                tagged(tags, key, value).then(|| balancer_from(lb, tags.clone()))
            })
            .collect())
    }

    async fn load_balancer(&self, arn: &str) -> Result<Option<LoadBalancer>> {
        match self.elb.describe_load_balancers().load_balancer_arns(arn).send().await {
            Ok(out) => Ok(out.load_balancers().first().map(|lb| balancer_from(lb, Vec::new()))),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_load_balancer_not_found_exception()) => Ok(None),
            Err(e) => Err(aws("elbv2:DescribeLoadBalancers")(e).into()),
        }
    }

    async fn create_load_balancer(
        &self,
        name: &str,
        subnet_ids: &[String],
        security_group_id: &str,
        tags: &[Tag],
    ) -> Result<LoadBalancer> {
        let out = self
            .elb
            .create_load_balancer()
            .name(name)
            .r#type(elb::LoadBalancerTypeEnum::Application)
            .scheme(elb::LoadBalancerSchemeEnum::InternetFacing)
            .ip_address_type(elb::IpAddressType::Ipv4)
            .set_subnets(Some(subnet_ids.to_vec()))
            .security_groups(security_group_id)
            .set_tags(Some(elb_tags(tags)))
            .send()
            .await
            .map_err(aws("elbv2:CreateLoadBalancer"))?;
        let lb = out.load_balancers().first().ok_or_else(|| crate::AwsError {
            action: "elbv2:CreateLoadBalancer",
            code: None,
            message: "the answer named no load balancer".into(),
        })?;
        Ok(balancer_from(lb, tags.to_vec()))
    }

    async fn delete_load_balancer(&self, arn: &str) -> Result<()> {
        self.elb.delete_load_balancer().load_balancer_arn(arn).send().await.map_err(aws("elbv2:DeleteLoadBalancer"))?;
        Ok(())
    }

    async fn target_groups_tagged(&self, key: &str, value: &str) -> Result<Vec<TargetGroup>> {
        let mut all = Vec::new();
        let mut pages = self.elb.describe_target_groups().into_paginator().send();
        while let Some(page) = pages.next().await {
            all.extend(page.map_err(aws("elbv2:DescribeTargetGroups"))?.target_groups().iter().cloned());
        }
        let arns: Vec<String> = all.iter().filter_map(|g| g.target_group_arn().map(str::to_owned)).collect();
        let tags = self.elb_tags_of(&arns).await?;
        Ok(all
            .iter()
            .filter_map(|g| {
                let arn = g.target_group_arn()?;
                let (_, tags) = tags.iter().find(|(a, _)| a == arn)?;
                tagged(tags, key, value).then(|| TargetGroup {
                    arn: arn.to_owned(),
                    name: g.target_group_name().unwrap_or_default().to_owned(),
                    tags: tags.clone(),
                })
            })
            .collect())
    }

    async fn create_target_group(
        &self,
        name: &str,
        vpc_id: &str,
        health: &HealthCheck,
        deregistration_delay_secs: u32,
        tags: &[Tag],
    ) -> Result<TargetGroup> {
        let out = self
            .elb
            .create_target_group()
            .name(name)
            .protocol(elb::ProtocolEnum::Http)
            .port(80)
            .vpc_id(vpc_id)
            .target_type(elb::TargetTypeEnum::Instance)
            .health_check_protocol(elb::ProtocolEnum::Http)
            .health_check_path(&health.path)
            .health_check_interval_seconds(health.interval_secs)
            .health_check_timeout_seconds(health.timeout_secs)
            .healthy_threshold_count(health.healthy_threshold)
            .unhealthy_threshold_count(health.unhealthy_threshold)
            .matcher(elb::Matcher::builder().http_code("200").build())
            .set_tags(Some(elb_tags(tags)))
            .send()
            .await
            .map_err(aws("elbv2:CreateTargetGroup"))?;
        let arn = out.target_groups().first().and_then(|g| g.target_group_arn()).unwrap_or_default().to_owned();
        self.elb
            .modify_target_group_attributes()
            .target_group_arn(&arn)
            .attributes(
                elb::TargetGroupAttribute::builder()
                    .key("deregistration_delay.timeout_seconds")
                    .value(deregistration_delay_secs.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(aws("elbv2:ModifyTargetGroupAttributes"))?;
        Ok(TargetGroup { arn, name: name.to_owned(), tags: tags.to_vec() })
    }

    async fn delete_target_group(&self, arn: &str) -> Result<()> {
        self.elb.delete_target_group().target_group_arn(arn).send().await.map_err(aws("elbv2:DeleteTargetGroup"))?;
        Ok(())
    }

    async fn register_target(&self, target_group_arn: &str, instance_id: &str) -> Result<()> {
        self.elb
            .register_targets()
            .target_group_arn(target_group_arn)
            .targets(elb::TargetDescription::builder().id(instance_id).build())
            .send()
            .await
            .map_err(aws("elbv2:RegisterTargets"))?;
        Ok(())
    }

    async fn deregister_target(&self, target_group_arn: &str, instance_id: &str) -> Result<()> {
        self.elb
            .deregister_targets()
            .target_group_arn(target_group_arn)
            .targets(elb::TargetDescription::builder().id(instance_id).build())
            .send()
            .await
            .map_err(aws("elbv2:DeregisterTargets"))?;
        Ok(())
    }

    async fn target_health(&self, target_group_arn: &str) -> Result<Vec<TargetHealth>> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(target_group_arn)
            .send()
            .await
            .map_err(aws("elbv2:DescribeTargetHealth"))?;
        Ok(out
            .target_health_descriptions()
            .iter()
            .map(|d| TargetHealth {
                instance_id: d.target().and_then(|t| t.id()).unwrap_or_default().to_owned(),
                state: d.target_health().and_then(|h| h.state()).map(|s| s.as_str().to_owned()).unwrap_or_default(),
                reason: d.target_health().and_then(|h| h.reason()).map(|r| r.as_str().to_owned()),
            })
            .collect())
    }

    async fn listeners(&self, load_balancer_arn: &str) -> Result<Vec<Listener>> {
        let out = self
            .elb
            .describe_listeners()
            .load_balancer_arn(load_balancer_arn)
            .send()
            .await
            .map_err(aws("elbv2:DescribeListeners"))?;
        Ok(out.listeners().iter().map(listener_from).collect())
    }

    async fn create_listener(&self, load_balancer_arn: &str, spec: &ListenerSpec) -> Result<Listener> {
        let action = match &spec.action {
            ListenerAction::Forward { target_group_arn } => {
                elb::Action::builder().r#type(elb::ActionTypeEnum::Forward).target_group_arn(target_group_arn).build()
            }
            ListenerAction::RedirectToHttps => elb::Action::builder()
                .r#type(elb::ActionTypeEnum::Redirect)
                .redirect_config(
                    elb::RedirectActionConfig::builder()
                        .protocol("HTTPS")
                        .port("443")
                        .status_code(elb::RedirectActionStatusCodeEnum::Http301)
                        .build(),
                )
                .build(),
        };
        let mut req = self
            .elb
            .create_listener()
            .load_balancer_arn(load_balancer_arn)
            .port(spec.port.into())
            .protocol(elb::ProtocolEnum::from(spec.protocol.as_str()))
            .default_actions(action);
        if let Some(arn) = &spec.certificate_arn {
            req = req.certificates(elb::Certificate::builder().certificate_arn(arn).build());
        }
        if let Some(policy) = &spec.ssl_policy {
            req = req.ssl_policy(policy);
        }
        let out = req.send().await.map_err(aws("elbv2:CreateListener"))?;
        Ok(out.listeners().first().map(listener_from).unwrap_or(Listener {
            arn: String::new(),
            port: spec.port,
            protocol: spec.protocol.clone(),
            certificate_arn: spec.certificate_arn.clone(),
            action: Some(spec.action.clone()),
        }))
    }

    async fn delete_listener(&self, arn: &str) -> Result<()> {
        self.elb.delete_listener().listener_arn(arn).send().await.map_err(aws("elbv2:DeleteListener"))?;
        Ok(())
    }

    async fn certificates_tagged(&self, key: &str, value: &str) -> Result<Vec<Certificate>> {
        let mut arns = Vec::new();
        let mut pages = self.acm.list_certificates().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(aws("acm:ListCertificates"))?;
            arns.extend(page.certificate_summary_list().iter().filter_map(|c| c.certificate_arn().map(str::to_owned)));
        }
        let mut found = Vec::new();
        for arn in arns {
            let out = self
                .acm
                .list_tags_for_certificate()
                .certificate_arn(&arn)
                .send()
                .await
                .map_err(aws("acm:ListTagsForCertificate"))?;
            let tags = tags_from_pairs(out.tags().iter().map(|t| (Some(t.key()), t.value())).collect());
            if tagged(&tags, key, value)
                && let Some(cert) = self.certificate(&arn).await?
            {
                found.push(Certificate { tags, ..cert });
            }
        }
        Ok(found)
    }

    async fn certificate(&self, arn: &str) -> Result<Option<Certificate>> {
        match self.acm.describe_certificate().certificate_arn(arn).send().await {
            Ok(out) => Ok(out.certificate().map(certificate_from)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
            Err(e) => Err(aws("acm:DescribeCertificate")(e).into()),
        }
    }

    async fn request_certificate(&self, domain: &str, token: &str, tags: &[Tag]) -> Result<String> {
        const ACTION: &str = "acm:RequestCertificate";
        let tags = tags
            .iter()
            .map(|t| acm::Tag::builder().key(&t.key).value(&t.value).build())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(unbuildable(ACTION))?;
        let out = self
            .acm
            .request_certificate()
            .domain_name(domain)
            .validation_method(acm::ValidationMethod::Dns)
            .idempotency_token(token)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws(ACTION))?;
        Ok(out.certificate_arn().unwrap_or_default().to_owned())
    }

    async fn delete_certificate(&self, arn: &str) -> Result<()> {
        self.acm.delete_certificate().certificate_arn(arn).send().await.map_err(aws("acm:DeleteCertificate"))?;
        Ok(())
    }
}
