//! Node identity: a stable [`NodeId`] plus an incarnation number that grows on every start.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest node id accepted, in bytes. Ids travel in every load report, so they stay short.
pub const MAX_NODE_ID_LEN: usize = 64;

/// A node's stable name: the same across restarts and address changes.
///
/// One to [`MAX_NODE_ID_LEN`] bytes of ASCII letters, digits and `.`, `-`, `_`, `:`, so that an id
/// can be written in a URL, a log line or a metric label without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

/// Why a string is not a valid [`NodeId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The id is empty.
    #[error("node id is empty")]
    Empty,
    /// The id is longer than [`MAX_NODE_ID_LEN`] bytes.
    #[error("node id is {0} bytes long; at most {MAX_NODE_ID_LEN} are allowed")]
    TooLong(usize),
    /// The id contains a character outside `[A-Za-z0-9._:-]`.
    #[error("node id contains {0:?}; only ASCII letters, digits and . - _ : are allowed")]
    BadChar(char),
}

impl NodeId {
    /// Checks and wraps a node id.
    pub fn new(id: impl Into<String>) -> Result<Self, NodeIdError> {
        let id = id.into();
        if id.is_empty() {
            return Err(NodeIdError::Empty);
        }
        if id.len() > MAX_NODE_ID_LEN {
            return Err(NodeIdError::TooLong(id.len()));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')))
        {
            return Err(NodeIdError::BadChar(c));
        }
        Ok(NodeId(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = NodeIdError;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        NodeId::new(id)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl std::str::FromStr for NodeId {
    type Err = NodeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_odd_ones() {
        assert!(NodeId::new("node-1.example:8080").is_ok());
        assert_eq!(NodeId::new(""), Err(NodeIdError::Empty));
        assert_eq!(NodeId::new("a b"), Err(NodeIdError::BadChar(' ')));
        assert_eq!(NodeId::new("x".repeat(65)), Err(NodeIdError::TooLong(65)));
        assert!(NodeId::new("x".repeat(64)).is_ok());
    }
}
