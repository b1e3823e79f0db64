//! The versions a user may start: the tags present in every versioned repository of
//! the session template (a session of a version runs `{repository}:{version}` of each),
//! newest first, with the one `latest` names marked.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ports::{Registry, TaggedImage};
use crate::session::Version;
use crate::template::SessionTemplate;

/// A version whose image exists in every repository of the template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailableVersion {
    pub version: Version,
    /// When its last image was pushed: the moment the version became complete.
    pub pushed_at: DateTime<Utc>,
    /// In every repository, its image is the very image `latest` names (same digest).
    pub latest: bool,
}

/// The versions of the template's images, read from the registry once per repository.
/// A template without versioned images has none.
pub async fn available_versions(
    template: &SessionTemplate,
    registry: &impl Registry,
) -> Result<Vec<AvailableVersion>> {
    let mut repositories = Vec::new();
    for repository in template.repositories() {
        repositories.push(registry.tagged_images(repository).await?);
    }
    Ok(common_versions(&repositories))
}

/// The tags present in every one of `repositories` (each given as its tagged images)
/// that are valid versions, newest first: by the latest push time among their images,
/// ties by tag, highest first, numbers compared as numbers (`1.10.0` before `1.9.0`,
/// `1.2.0` before `1.2`). A version is marked `latest` when its image in every
/// repository is the one `latest` names there. `latest` itself is listed only when no
/// other version names its images: then it is the one entry marked.
fn common_versions(repositories: &[Vec<TaggedImage>]) -> Vec<AvailableVersion> {
    // Tag -> (digest, pushed_at) of each repository; a tag names one image per repository.
    let by_tag: Vec<BTreeMap<&str, (&str, DateTime<Utc>)>> = repositories
        .iter()
        .map(|images| {
            images
                .iter()
                .flat_map(|image| {
                    image
                        .tags
                        .iter()
                        .map(|tag| (tag.as_str(), (image.digest.as_str(), image.pushed_at)))
                })
                .collect()
        })
        .collect();
    let Some((first, others)) = by_tag.split_first() else {
        return Vec::new();
    };
    let digests_of = |tag: &str| -> Option<(Vec<&str>, DateTime<Utc>)> {
        let (digest, pushed_at) = *first.get(tag)?;
        let mut digests = vec![digest];
        let mut newest = pushed_at;
        for repository in others {
            let (digest, pushed_at) = *repository.get(tag)?;
            digests.push(digest);
            newest = newest.max(pushed_at);
        }
        Some((digests, newest))
    };
    let latest = digests_of(Version::DEFAULT);
    let mut versions: Vec<AvailableVersion> = first
        .keys()
        .filter(|tag| **tag != Version::DEFAULT)
        .filter_map(|tag| {
            let version = Version::parse(tag).ok()?;
            let (digests, pushed_at) = digests_of(tag)?;
            Some(AvailableVersion {
                version,
                pushed_at,
                latest: latest.as_ref().is_some_and(|(named, _)| *named == digests),
            })
        })
        .collect();
    if let Some((_, pushed_at)) = latest.filter(|_| !versions.iter().any(|v| v.latest)) {
        versions.push(AvailableVersion {
            version: Version::default(),
            pushed_at,
            latest: true,
        });
    }
    versions.sort_by(|a, b| {
        b.pushed_at
            .cmp(&a.pushed_at)
            .then_with(|| natural_order(b.version.as_str(), a.version.as_str()))
    });
    versions
}

/// Compares tags piece by piece, runs of digits by their value and everything else as
/// text; tags equal so (`1.01` and `1.1`) as text.
fn natural_order(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (pieces(a), pieces(b));
    loop {
        let order = match (x.next(), y.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(p), Some(q)) if is_number(p) && is_number(q) => {
                // Compared as written, so that no run of digits is too long for a number.
                let (m, n) = (p.trim_start_matches('0'), q.trim_start_matches('0'));
                m.len().cmp(&n.len()).then_with(|| m.cmp(n))
            }
            (Some(p), Some(q)) => p.cmp(q),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
}

fn is_number(piece: &str) -> bool {
    piece.starts_with(|c: char| c.is_ascii_digit())
}

/// A tag cut where digits meet other characters: `1.10.0-rc1` is `1`, `.`, `10`, `.`,
/// `0`, `-rc`, `1`.
fn pieces(tag: &str) -> impl Iterator<Item = &str> {
    let mut rest = tag;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (piece, after) = rest.split_at(end);
        rest = after;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_tags_compare_by_value_highest_first() {
        let long = format!("1.{}", "9".repeat(60));
        let newest_first = [
            "a1",
            "2",
            &long,
            "1.10.0",
            "1.9.0",
            "01.9.0",
            "1.2.0-rc1",
            "1.2.0",
            "1.2",
        ];
        let mut tags = newest_first.to_vec();
        tags.reverse();
        tags.sort_by(|a, b| natural_order(b, a));
        assert_eq!(tags, newest_first);
    }

    #[test]
    fn a_tag_is_cut_where_digits_meet_other_characters() {
        assert_eq!(
            pieces("1.10.0-rc1").collect::<Vec<_>>(),
            ["1", ".", "10", ".", "0", "-rc", "1"]
        );
        assert_eq!(pieces("").count(), 0);
    }
}
