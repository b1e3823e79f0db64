use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::Utc;

use crate::error::{Error, Result};
use crate::ports::{EventBus, Network, Registry, Storage, TaggedImage, TaskRoles};
use crate::template::user_key;

/// EFS access points in memory: mirrors `aws::efs::EfsStorage`, whose client token
/// (one per user) makes a repeated create answer the user's existing access point.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    access_points: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<String>>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    /// The users a create was asked for, one entry a call.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The access point of each user.
    pub fn access_points(&self) -> BTreeMap<String, String> {
        self.access_points.lock().unwrap().clone()
    }
}

impl Storage for MemoryStorage {
    async fn create_access_point(&self, user_id: &str) -> Result<String> {
        self.calls.lock().unwrap().push(user_id.to_owned());
        let mut access_points = self.access_points.lock().unwrap();
        let n = access_points.len() + 1;
        Ok(access_points
            .entry(user_id.to_owned())
            .or_insert_with(|| format!("fsap-{n:017x}"))
            .clone())
    }
}

/// Per-user IAM task roles in memory: mirrors `aws::iam::IamTaskRoles`, which makes
/// the role once and answers the same ARN to every later or concurrent call.
#[derive(Debug, Default)]
pub struct MemoryTaskRoles {
    roles: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl MemoryTaskRoles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call: (user, access point).
    pub fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().unwrap().clone()
    }

    /// The role of each user.
    pub fn roles(&self) -> BTreeMap<String, String> {
        self.roles.lock().unwrap().clone()
    }
}

impl TaskRoles for MemoryTaskRoles {
    async fn ensure_task_role(&self, user_id: &str, access_point_id: &str) -> Result<String> {
        self.calls
            .lock()
            .unwrap()
            .push((user_id.to_owned(), access_point_id.to_owned()));
        Ok(self
            .roles
            .lock()
            .unwrap()
            .entry(user_id.to_owned())
            .or_insert_with(|| {
                format!(
                    "arn:aws:iam::000000000000:role/sessions/users/sessions-{}",
                    user_key(user_id)
                )
            })
            .clone())
    }
}

/// ECR in memory: mirrors `aws::ecr::EcrRegistry`. A missing repository has no images
/// (not an error), and untagged images are left out of `tagged_images`.
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    images: Mutex<BTreeMap<String, Vec<TaggedImage>>>,
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pushes an image under `tags` (none: untagged); a tag moves to the new image.
    pub fn push(&self, repository: &str, digest: &str, tags: &[&str]) {
        let mut images = self.images.lock().unwrap();
        let repo = images.entry(repository.to_owned()).or_default();
        for image in repo.iter_mut() {
            image.tags.retain(|t| !tags.contains(&t.as_str()));
        }
        repo.push(TaggedImage {
            digest: digest.to_owned(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at: Utc::now(),
        });
    }

    /// Pushes one image per repository, all tagged `tag`.
    pub fn push_all<'a>(&self, repositories: impl IntoIterator<Item = &'a str>, tag: &str) {
        for (i, repository) in repositories.into_iter().enumerate() {
            self.push(repository, &format!("sha256:{i:064x}"), &[tag]);
        }
    }
}

impl Registry for MemoryRegistry {
    async fn image_exists(&self, repository: &str, tag: &str) -> Result<bool> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .get(repository)
            .is_some_and(|images| images.iter().any(|i| i.tags.iter().any(|t| t == tag))))
    }

    async fn tagged_images(&self, repository: &str) -> Result<Vec<TaggedImage>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .get(repository)
            .map(|images| {
                images
                    .iter()
                    .filter(|i| !i.tags.is_empty())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }
}

/// Network interfaces in memory: mirrors `aws::ec2::Ec2Network`. An interface without
/// a public IP answers `None`; one EC2 does not know is an error.
#[derive(Debug, Default)]
pub struct MemoryNetwork {
    interfaces: Mutex<BTreeMap<String, Option<String>>>,
}

impl MemoryNetwork {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an interface, with its public IP if it has one.
    pub fn add(&self, eni_id: &str, public_ip: Option<&str>) {
        self.interfaces
            .lock()
            .unwrap()
            .insert(eni_id.to_owned(), public_ip.map(str::to_owned));
    }
}

impl Network for MemoryNetwork {
    async fn public_ip(&self, eni_id: &str) -> Result<Option<String>> {
        self.interfaces
            .lock()
            .unwrap()
            .get(eni_id)
            .cloned()
            .ok_or_else(|| Error::Aws {
                operation: "DescribeNetworkInterfaces",
                message: format!("InvalidNetworkInterfaceID.NotFound: {eni_id}"),
            })
    }
}

/// The project's event bus in memory: mirrors `aws::eventbridge::EventBridgeBus` and
/// keeps what was published.
#[derive(Debug, Default)]
pub struct MemoryEventBus {
    published: Mutex<Vec<(String, serde_json::Value)>>,
}

impl MemoryEventBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event published: (detail type, detail).
    pub fn published(&self) -> Vec<(String, serde_json::Value)> {
        self.published.lock().unwrap().clone()
    }

    /// The detail types published, in order.
    pub fn detail_types(&self) -> Vec<String> {
        self.published().into_iter().map(|(t, _)| t).collect()
    }
}

impl EventBus for MemoryEventBus {
    async fn publish(&self, detail_type: &str, detail: &serde_json::Value) -> Result<()> {
        self.published
            .lock()
            .unwrap()
            .push((detail_type.to_owned(), detail.clone()));
        Ok(())
    }
}
