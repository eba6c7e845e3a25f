//! The appeal taxonomy: categories, labels and priorities.
//!
//! Ids are stable: they appear in `intents/`, in evaluation files and in the JSON output.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A category of appeal to the union. `none` (chatter) is not a category: see [`Label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Accident,
    Safety,
    Crisis,
    Breakdown,
    FreightArrears,
    Platform,
    Enforcement,
    Cargo,
    Labor,
    RestStop,
    Health,
    Membership,
    Other,
}

impl Category {
    /// Every category, most urgent first: ties between equally strong matters go to the earlier one.
    pub const ALL: [Category; 13] = [
        Category::Accident,
        Category::Safety,
        Category::Crisis,
        Category::Breakdown,
        Category::FreightArrears,
        Category::Platform,
        Category::Enforcement,
        Category::Cargo,
        Category::Labor,
        Category::RestStop,
        Category::Health,
        Category::Membership,
        Category::Other,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Category::Accident => "accident",
            Category::Safety => "safety",
            Category::Crisis => "crisis",
            Category::Breakdown => "breakdown",
            Category::FreightArrears => "freight_arrears",
            Category::Platform => "platform",
            Category::Enforcement => "enforcement",
            Category::Cargo => "cargo",
            Category::Labor => "labor",
            Category::RestStop => "rest_stop",
            Category::Health => "health",
            Category::Membership => "membership",
            Category::Other => "other",
        }
    }

    /// The taxonomy's default priority for the category.
    pub fn default_priority(self) -> Priority {
        match self {
            Category::Accident | Category::Safety | Category::Crisis => Priority::P1,
            Category::RestStop | Category::Health | Category::Membership | Category::Other => Priority::P3,
            _ => Priority::P2,
        }
    }

    /// Urgent categories: their recall is measured on its own.
    pub fn is_urgent(self) -> bool {
        self.default_priority() == Priority::P1
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown category {0:?} (expected one of: {ids})", ids = category_ids())]
pub struct UnknownCategory(pub String);

fn category_ids() -> String {
    Category::ALL.map(Category::id).join(", ")
}

impl FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::ALL
            .into_iter()
            .find(|c| c.id() == s)
            .ok_or_else(|| UnknownCategory(s.to_owned()))
    }
}

/// The outcome of classification: an appeal of some category, or chatter (`none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Appeal(Category),
    None,
}

impl Label {
    pub fn id(self) -> &'static str {
        match self {
            Label::Appeal(c) => c.id(),
            Label::None => "none",
        }
    }

    pub fn category(self) -> Option<Category> {
        match self {
            Label::Appeal(c) => Some(c),
            Label::None => None,
        }
    }

    /// All labels: the categories in taxonomy order, then `none`.
    pub fn all() -> impl Iterator<Item = Label> {
        Category::ALL.into_iter().map(Label::Appeal).chain([Label::None])
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Label {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "none" {
            Ok(Label::None)
        } else {
            s.parse().map(Label::Appeal)
        }
    }
}

impl Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How urgent a ticket is: P1 is the most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Priority {
    P1,
    P2,
    P3,
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown priority {0:?} (expected P1, P2 or P3)")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "P1" => Ok(Priority::P1),
            "P2" => Ok(Priority::P2),
            "P3" => Ok(Priority::P3),
            _ => Err(UnknownPriority(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_round_trips_through_its_id() {
        for label in Label::all() {
            assert_eq!(label.id().parse::<Label>().unwrap(), label);
        }
    }

    #[test]
    fn an_unknown_id_names_the_valid_ones() {
        let err = "accidnet".parse::<Label>().unwrap_err().to_string();
        assert!(err.contains("accidnet") && err.contains("freight_arrears"), "{err}");
    }

    #[test]
    fn urgent_categories_are_the_p1_ones() {
        let urgent: Vec<_> = Category::ALL.into_iter().filter(|c| c.is_urgent()).collect();
        assert_eq!(urgent, [Category::Accident, Category::Safety, Category::Crisis]);
    }
}
