//! Baked images: `ami bake` (CreateImage of a healthy server, tagged as
//! ours with what it holds), `ami list`, `ami delete` (the image and its
//! snapshots, only when tags prove both ours), and how `ec2 create --ami`
//! finds one by name and tells a baked image from any other.
//!
//! What runs on the host around the CreateImage (the secrets held aside and
//! put back) is the CLI's: this module only talks to EC2.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::api::*;
use crate::poll::poll_delays;
use crate::{Error, Result, tags};

/// What a baked image holds, as the source server reported it just before
/// the image was taken: its tags say it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Holds {
    /// The IMAGE-server clone's commit.
    pub repo_commit: String,
    /// The NVIDIA driver branch installed (`570-server`); None: no driver.
    pub driver_branch: Option<String>,
    /// (compose service, image digest `sha256:...`), sorted by service.
    pub digests: Vec<(String, String)>,
}

/// EC2 takes at most 50 tags a resource; the other tags of a baked image
/// take 8, so this many services get a digest tag each (IMAGE runs ~25).
pub const MAX_DIGEST_TAGS: usize = 40;

impl Holds {
    /// Read back from a baked image's tags.
    pub fn from_tags(image: &Image) -> Holds {
        let mut digests: Vec<(String, String)> = image
            .tags
            .iter()
            .filter_map(|t| t.key.strip_prefix(tags::DIGEST_PREFIX).map(|s| (s.to_owned(), t.value.clone())))
            .collect();
        digests.sort();
        Holds {
            repo_commit: image.tag(tags::REPO_COMMIT).unwrap_or_default().to_owned(),
            driver_branch: image.tag(tags::DRIVER_BRANCH).filter(|b| *b != "none").map(str::to_owned),
            digests,
        }
    }
}

/// The tags of baked image `name` made from server `server`.
pub fn image_tags(name: &str, server: &str, holds: &Holds) -> Vec<Tag> {
    let mut out = vec![
        Tag::new(tags::NAME, name),
        Tag::new(tags::MANAGED, "true"),
        Tag::new(tags::BAKED_IMAGE, name),
        Tag::new(tags::SOURCE_SERVER, server),
        Tag::new(tags::REPO_COMMIT, &holds.repo_commit),
        Tag::new(tags::DRIVER_BRANCH, holds.driver_branch.as_deref().unwrap_or("none")),
    ];
    out.extend(
        holds
            .digests
            .iter()
            .take(MAX_DIGEST_TAGS)
            .map(|(service, digest)| Tag::new(format!("{}{service}", tags::DIGEST_PREFIX), digest)),
    );
    out
}

/// The tags of a baked image's snapshots: ours, of which image.
pub fn snapshot_tags(name: &str, image_id: &str) -> Vec<Tag> {
    vec![
        Tag::new(tags::NAME, name),
        Tag::new(tags::MANAGED, "true"),
        Tag::new(tags::BAKED_IMAGE, name),
        Tag::new(tags::IMAGE_ID, image_id),
    ]
}

/// Whether `image` is a baked image of ours: owned by `account`, tagged
/// managed, and its name tag the name it has. A tag is anyone's to write who
/// may tag images, so the owner is checked too: an image shared with this
/// account by another keeps its owner's id.
pub fn is_ours(image: &Image, account: &str) -> bool {
    image.owner_id == account
        && image.tag(tags::MANAGED) == Some("true")
        && image.tag(tags::BAKED_IMAGE) == Some(image.name.as_str())
        && tags::is_image_name(&image.name)
}

/// This account's baked images, newest first.
pub async fn list<A: Ec2Api>(api: &A) -> Result<Vec<Image>> {
    let account = api.account_id().await?;
    let mut ours: Vec<Image> = api
        .own_images("tag-key", tags::BAKED_IMAGE)
        .await?
        .into_iter()
        .filter(|i| api.is_dry_run() || is_ours(i, &account))
        .collect();
    ours.sort_by(|a, b| b.creation_date.cmp(&a.creation_date));
    Ok(ours)
}

/// Baked image `name` of ours, if there is one.
pub async fn find<A: Ec2Api>(api: &A, name: &str) -> Result<Option<Image>> {
    let account = api.account_id().await?;
    Ok(api
        .own_images(&format!("tag:{}", tags::BAKED_IMAGE), name)
        .await?
        .into_iter()
        .find(|i| i.name == name && is_ours(i, &account)))
}

/// The image `ec2 create --ami` launches: an AMI id as given, or the name
/// of a baked image of ours. `baked`: what the image holds when its tags
/// (and its owner) say we baked it.
#[derive(Debug, Clone)]
pub struct LaunchImage {
    pub image: Image,
    pub baked: Option<Holds>,
}

pub async fn launch_image<A: Ec2Api>(api: &A, name_or_id: &str) -> Result<LaunchImage> {
    let image = if name_or_id.starts_with("ami-") {
        api.image(name_or_id).await?.ok_or_else(|| Error::ImageNotFound(name_or_id.to_owned()))?
    } else {
        find(api, name_or_id).await?.ok_or_else(|| Error::NoOwnImage(name_or_id.to_owned()))?
    };
    let baked = if api.is_dry_run() {
        None
    } else {
        let account = api.account_id().await?;
        is_ours(&image, &account).then(|| Holds::from_tags(&image))
    };
    Ok(LaunchImage { image, baked })
}

/// What a bake started: the image, its snapshots now fixed in time.
#[derive(Debug, Clone)]
pub struct Started {
    pub image_id: String,
    /// The image existed already (a re-run): nothing was asked of EC2.
    pub existed: bool,
}

/// Is there an image named `name` already? Ours: a re-run finds it (it is
/// not made twice); another's: refused (EC2 would refuse the name too, but
/// only after the host's secrets were held aside).
pub async fn check_name_free<A: Ec2Api>(api: &A, name: &str) -> Result<Option<Image>> {
    if let Some(ours) = find(api, name).await? {
        return Ok(Some(ours));
    }
    if api.is_dry_run() {
        return Ok(None);
    }
    // Any image of this account by that name, tagged or not: EC2 names are
    // unique per account and region.
    let account = api.account_id().await?;
    let named = api.own_images("name", name).await?;
    if let Some(other) = named.into_iter().find(|i| i.name == name && !is_ours(i, &account)) {
        return Err(Error::ImageNameTaken { name: name.to_owned(), image_id: other.id });
    }
    Ok(None)
}

/// CreateImage of `instance` (running; EC2 does not reboot it: the host
/// was quiesced by the caller), tagged as ours.
pub async fn create_image<A: Ec2Api>(
    api: &A,
    instance: &Instance,
    name: &str,
    holds: &Holds,
    mut log: impl FnMut(String),
) -> Result<String> {
    let request = CreateImageRequest {
        instance_id: instance.id.clone(),
        name: name.to_owned(),
        description: format!("IMAGE server baked by image-provision from {}", instance.name),
        no_reboot: true,
        image_tags: image_tags(name, &instance.name, holds),
    };
    let id = api.create_image(&request).await?;
    log(format!("CreateImage {name} from {} ({}): {id}", instance.name, instance.id));
    Ok(id)
}

/// Wait (within `timeout`) until the image is `available`, or, with
/// `snapshots_only`, until EC2 names its snapshots: from then on what the
/// disk held at CreateImage is fixed in them (an EBS snapshot is of its
/// moment), and the host may change again. `progress` gets one line a
/// minute, and each change of state.
pub async fn wait_image<A: Ec2Api>(
    api: &A,
    image_id: &str,
    snapshots_only: bool,
    timeout: Duration,
    mut progress: impl FnMut(String),
) -> Result<Image> {
    let what = if snapshots_only { "name its snapshots" } else { "become available" };
    let start = Instant::now();
    let mut delays = poll_delays();
    let mut said = (String::new(), 0u64);
    loop {
        let last = match api.image(image_id).await? {
            Some(i) if i.state == "available" => return Ok(i),
            Some(i) if snapshots_only && !i.snapshot_ids.is_empty() => return Ok(i),
            Some(i) if matches!(i.state.as_str(), "failed" | "invalid" | "deregistered" | "error") => {
                return Err(Error::ImageFailed { image_id: image_id.to_owned(), state: i.state });
            }
            Some(i) => format!("state {}", i.state),
            None => "not visible yet".to_owned(),
        };
        let minute = start.elapsed().as_secs() / 60;
        if last != said.0 || minute > said.1 {
            progress(format!(
                "{image_id}: {last} after {} s (waiting to {what}, limit {} s)",
                start.elapsed().as_secs(),
                timeout.as_secs()
            ));
            said = (last.clone(), minute);
        }
        if start.elapsed() > timeout {
            return Err(Error::ImageTimeout {
                image_id: image_id.to_owned(),
                what,
                waited_secs: start.elapsed().as_secs(),
                last,
            });
        }
        tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
    }
}

/// Tag the image's snapshots as ours, of this image, unless they are.
pub async fn tag_snapshots<A: Ec2Api>(api: &A, image: &Image, mut log: impl FnMut(String)) -> Result<()> {
    let found = api.snapshots(&image.snapshot_ids).await?;
    let untagged: Vec<String> = found
        .iter()
        .filter(|s| tags::value_of(&s.tags, tags::IMAGE_ID).as_deref() != Some(image.id.as_str()))
        .map(|s| s.id.clone())
        .collect();
    if !untagged.is_empty() {
        api.create_tags(&untagged, &snapshot_tags(&image.name, &image.id)).await?;
        log(format!("tagged snapshots {} as {}'s", untagged.join(", "), image.name));
    }
    Ok(())
}

/// What `ami delete` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeleteReport {
    pub name: String,
    pub image_id: Option<String>,
    pub deregistered: bool,
    pub snapshots_deleted: Vec<String>,
    /// Snapshots of the image not tagged as ours (or as another image's):
    /// left, with why.
    pub snapshots_left: Vec<(String, String)>,
}

/// Deregister baked image `name` (ours by its tags and owner) and delete
/// its snapshots that are tagged ours and this image's. A re-run after a
/// cut finds the snapshots still tagged with the image's id and deletes them.
pub async fn delete<A: Ec2Api>(api: &A, name: &str, mut log: impl FnMut(String)) -> Result<DeleteReport> {
    let mut report = DeleteReport { name: name.to_owned(), ..Default::default() };
    let image = find(api, name).await?;
    let (image_id, snapshot_ids) = match &image {
        Some(i) => (i.id.clone(), i.snapshot_ids.clone()),
        None if api.is_dry_run() => ("<the image's id>".to_owned(), vec!["<its snapshots' ids>".to_owned()]),
        None => {
            // Deregistered by a run cut short: its snapshots may remain,
            // found by the tags bake gave them.
            let left = orphan_snapshots(api, name).await?;
            if left.is_empty() {
                return Err(Error::NoOwnImage(name.to_owned()));
            }
            (String::new(), left)
        }
    };
    if api.is_dry_run() {
        api.deregister_image(&image_id).await?;
    }
    if let Some(image) = &image {
        // The snapshots as they are before the image goes (after it, a
        // snapshot of a deregistered image still says which image it was).
        api.deregister_image(&image.id).await?;
        log(format!("deregistered {} ({})", image.name, image.id));
        report.deregistered = true;
        report.image_id = Some(image.id.clone());
    }
    let snapshots = if api.is_dry_run() {
        snapshot_ids.iter().map(|id| Snapshot { id: id.clone(), tags: snapshot_tags(name, &image_id) }).collect()
    } else {
        api.snapshots(&snapshot_ids).await?
    };
    for snapshot in snapshots {
        let ours = tags::value_of(&snapshot.tags, tags::MANAGED).as_deref() == Some("true")
            && tags::value_of(&snapshot.tags, tags::BAKED_IMAGE).as_deref() == Some(name)
            && (image_id.is_empty() || tags::value_of(&snapshot.tags, tags::IMAGE_ID).as_deref() == Some(&image_id));
        if !ours {
            let why = "not tagged as this image's snapshot: left for you to delete".to_owned();
            log(format!("left snapshot {}: {why}", snapshot.id));
            report.snapshots_left.push((snapshot.id, why));
            continue;
        }
        api.delete_snapshot(&snapshot.id).await?;
        log(format!("deleted snapshot {}", snapshot.id));
        report.snapshots_deleted.push(snapshot.id);
    }
    Ok(report)
}

/// Snapshots tagged as baked image `name`'s whose image is gone (a
/// delete cut between the deregistration and the snapshots).
async fn orphan_snapshots<A: Ec2Api>(api: &A, name: &str) -> Result<Vec<String>> {
    let tagged = api.own_snapshots_tagged(tags::BAKED_IMAGE, name).await?;
    Ok(tagged.into_iter().map(|s| s.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(owner: &str, name: &str, tags: Vec<Tag>) -> Image {
        Image {
            id: "ami-1".into(),
            name: name.into(),
            creation_date: String::new(),
            root_device_name: "/dev/sda1".into(),
            state: "available".into(),
            owner_id: owner.into(),
            tags,
            snapshot_ids: vec![],
        }
    }

    #[test]
    fn ours_needs_our_owner_the_managed_tag_and_its_own_name() {
        let holds = Holds { repo_commit: "abc".into(), driver_branch: None, digests: vec![] };
        let tags = image_tags("web-img", "web", &holds);
        assert!(is_ours(&image("111", "web-img", tags.clone()), "111"));
        assert!(!is_ours(&image("222", "web-img", tags.clone()), "111"), "shared by another account");
        assert!(!is_ours(&image("111", "other-img", tags.clone()), "111"), "tags of another name");
        let unmanaged: Vec<Tag> = tags.iter().filter(|t| t.key != tags::MANAGED).cloned().collect();
        assert!(!is_ours(&image("111", "web-img", unmanaged), "111"));
    }

    #[test]
    fn holds_go_to_tags_and_back_within_ec2s_limit() {
        let digests: Vec<(String, String)> =
            (0..60).map(|i| (format!("service-{i:02}"), format!("sha256:{i:064x}"))).collect();
        let holds = Holds { repo_commit: "c0ffee".into(), driver_branch: Some("570-server".into()), digests };
        let tags = image_tags("web-img", "web", &holds);
        assert!(tags.len() <= 50, "{}", tags.len());
        let back = Holds::from_tags(&image("111", "web-img", tags));
        assert_eq!(back.repo_commit, "c0ffee");
        assert_eq!(back.driver_branch.as_deref(), Some("570-server"));
        assert_eq!(back.digests.len(), MAX_DIGEST_TAGS);
        let none = Holds::from_tags(&image("111", "x", image_tags("x", "web", &Holds::default())));
        assert_eq!(none.driver_branch, None);
    }
}
