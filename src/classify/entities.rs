//! Entities a responder needs at a glance: plates, phone numbers, amounts, highways and platforms.
//!
//! They are read from the normalized text (half-width, lowercase, simplified), and written back in the
//! usual form: plates and highway codes upper-case, phone numbers as bare digits, amounts in yuan.

use std::sync::LazyLock;

use chinese_number::{ChineseCountMethod, ChineseToNumber};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::matcher::Token;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entity {
    /// A vehicle plate, as `晋A·3F521`.
    Plate { text: String, plate: String },
    /// A mobile number, digits only.
    Phone { text: String, number: String },
    /// An amount of money; `approximate` for "八千多" (over eight thousand).
    Amount { text: String, yuan: u64, approximate: bool },
    /// A highway code (`G5`) or name (`京昆高速`, `208国道`).
    Highway { text: String },
    /// A freight platform named in the message.
    Platform { text: String },
}

static PLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"([京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼])\s?([a-z])\s?[·•.\-]?\s?([a-z0-9]{5,6})",
    )
    .expect("plate pattern")
});
static PHONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"1[3-9][0-9](?:[ \-]?[0-9]){8}").expect("phone pattern"));
static ARABIC_AMOUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9]+(?:\.[0-9]+)?)(多)?(万|千|w|k)?(多)?(块钱|块|元)?").expect("amount pattern"));
static CHINESE_AMOUNT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[一二两三四五六七八九十][零一二两三四五六七八九十百千万多]*(块钱|块|元)?").expect("amount pattern")
});
static HIGHWAY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[gs][0-9]{1,4}|[0-9]{3}国道|国道[0-9]{3}").expect("highway pattern"));

/// Words after a number that make it something other than money: 12分, 32吨, 9米6, 3天.
const NOT_MONEY: &[&str] = &[
    "分",
    "吨",
    "公里",
    "米",
    "天",
    "个",
    "趟",
    "车",
    "次",
    "小时",
    "钟头",
    "点",
    "号",
    "岁",
    "%",
    "年",
    "月",
    "台",
    "方",
    "箱",
    "片",
    "升",
    "人",
    "级",
    "斤",
    "桶",
    "轴",
    "档",
    "挡",
    "马力",
    "度",
    "周",
    "礼拜",
    "单",
    "遍",
    "回",
    "家",
    "条",
    "张",
    "层",
    "件",
    "袋",
    "位",
    "名",
    "口",
    "辆",
    "多公里",
    "多天",
    "多吨",
    "多个",
    "多小时",
    "k",
];
/// Words shortly before a number that make a bare number money: 罚2000, 欠我8000.
const MONEY_CONTEXT: &[&str] = &[
    "罚", "赔", "扣", "欠", "补", "交", "花", "收", "给", "费", "钱", "押金", "工资", "要",
];

pub fn extract(text: &str, tokens: &[Token<'_>]) -> Vec<Entity> {
    let mut found: Vec<(usize, Entity)> = Vec::new();
    // Plates, phones, highway codes and amounts in digits all need a digit, and most messages have none;
    // a phone number needs eleven, a plate a letter too, a highway code a g or an s (or 国道).
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let letters = digits > 0 && text.bytes().any(|b| b.is_ascii_lowercase());
    let highway_letter = digits > 0 && text.bytes().any(|b| b == b'g' || b == b's');
    let only_if = |needed: bool| if needed { text } else { "" };
    let with_digits = only_if(digits > 0);
    let mut taken: Vec<(usize, usize)> = Vec::new();

    for c in PLATE.captures_iter(only_if(letters)) {
        let m = c.get(0).expect("whole match");
        let rest = &c[3];
        if !rest.bytes().any(|b| b.is_ascii_digit()) || alnum_at(text, m.end()) {
            continue;
        }
        let plate = format!("{}{}·{}", &c[1], c[2].to_uppercase(), rest.to_uppercase());
        taken.push((m.start(), m.end()));
        found.push((
            m.start(),
            Entity::Plate {
                text: m.as_str().to_uppercase(),
                plate,
            },
        ));
    }
    for m in PHONE.find_iter(only_if(digits >= 11)) {
        if digit_before(text, m.start()) || digit_at(text, m.end()) || overlaps(&taken, m.start(), m.end()) {
            continue;
        }
        let number: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        taken.push((m.start(), m.end()));
        found.push((
            m.start(),
            Entity::Phone {
                text: m.as_str().to_owned(),
                number,
            },
        ));
    }
    for m in HIGHWAY.find_iter(only_if(highway_letter || (digits > 0 && text.contains("国道")))) {
        if alnum_before(text, m.start()) || alnum_at(text, m.end()) || overlaps(&taken, m.start(), m.end()) {
            continue;
        }
        taken.push((m.start(), m.end()));
        found.push((
            m.start(),
            Entity::Highway {
                text: m.as_str().to_uppercase(),
            },
        ));
    }
    // One set of capture positions for every match: most messages with digits have several numbers.
    let mut groups = ARABIC_AMOUNT.capture_locations();
    let mut from = 0;
    while let Some(m) = ARABIC_AMOUNT.captures_read_at(&mut groups, with_digits, from) {
        // A match holds a digit at least: the search always moves on.
        from = m.end();
        let group = |i: usize| groups.get(i).map(|(start, end)| &with_digits[start..end]);
        if alnum_before(text, m.start()) || overlaps(&taken, m.start(), m.end()) {
            continue;
        }
        let Some(Ok(number)) = group(1).map(str::parse::<f64>) else {
            continue;
        };
        let magnitude = match group(3) {
            Some("万" | "w") => 10_000.0,
            Some("千" | "k") => 1_000.0,
            _ => 1.0,
        };
        let has_unit = group(5).is_some() || magnitude > 1.0;
        let bare_number_is_money = money_context(text, m.start()) && !not_money(text, m.end());
        if !has_unit && !bare_number_is_money {
            continue;
        }
        let approximate = group(2).is_some() || group(4).is_some();
        found.push((
            m.start(),
            Entity::Amount {
                text: m.as_str().to_owned(),
                yuan: (number * magnitude).round() as u64,
                approximate,
            },
        ));
    }
    // Spoken amounts need a magnitude or a currency word.
    // One search a character: each looks for its last byte, faster than reading the text a character at a time.
    let has_amount_word = ['百', '千', '万', '块', '元'].iter().any(|&c| text.contains(c));
    for m in CHINESE_AMOUNT.find_iter(if has_amount_word { text } else { "" }) {
        if overlaps(&taken, m.start(), m.end()) {
            continue;
        }
        let digits = m.as_str().trim_end_matches(['块', '钱', '元']);
        // 块 is also the measure word of pieces, and 一块 "together" (一块去, 一块烧了, 一块石头): after a lone 一 only
        // 一块钱 is money.
        let has_unit = m.as_str().ends_with("块钱")
            || m.as_str().ends_with('元')
            || (m.as_str().ends_with('块') && digits != "一");
        let has_magnitude = digits.contains(['百', '千', '万']);
        let is_money = has_unit || (has_magnitude && !not_money(text, m.end()));
        if !is_money {
            continue;
        }
        if let Some((yuan, approximate)) = parse_chinese_amount(digits) {
            found.push((
                m.start(),
                Entity::Amount {
                    text: m.as_str().to_owned(),
                    yuan,
                    approximate,
                },
            ));
        }
    }

    let mut seen: Vec<&str> = Vec::new();
    // A name of one Chinese character (three bytes) is too ambiguous to be taken for one.
    for t in tokens.iter().filter(|t| t.text.len() > 3) {
        let entity = if t.marks.platform {
            Entity::Platform {
                text: t.text.to_owned(),
            }
        } else if t.marks.highway {
            Entity::Highway {
                text: t.text.to_owned(),
            }
        } else {
            continue;
        };
        if !seen.contains(&t.text) {
            seen.push(t.text);
            found.push((t.start, entity));
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found.dedup_by(|a, b| a.1 == b.1);
    found.into_iter().map(|(_, e)| e).collect()
}

/// `八千多` → (8000, approximate); `两万六` → 26000 (the spoken form of 两万六千); `一千二百` → 1200.
pub fn parse_chinese_amount(digits: &str) -> Option<(u64, bool)> {
    let approximate = digits.contains('多');
    let mut plain: String = digits
        .chars()
        .filter(|&c| c != '多')
        .map(|c| if c == '两' { '二' } else { c })
        .collect();
    // Spoken shorthand: a last digit after a magnitude means the next magnitude down.
    let mut chars = plain.chars().rev();
    if let (Some(last), Some(before)) = (chars.next(), chars.next()) {
        if last != '十' && !"百千万".contains(last) {
            match before {
                '万' => plain.push('千'),
                '千' => plain.push('百'),
                '百' => plain.push('十'),
                _ => {}
            }
        }
    }
    let n: u64 = plain.to_number(ChineseCountMethod::TenThousand).ok()?;
    (n > 0).then_some((n, approximate))
}

fn overlaps(taken: &[(usize, usize)], start: usize, end: usize) -> bool {
    taken.iter().any(|&(s, e)| start < e && s < end)
}

fn digit_before(text: &str, at: usize) -> bool {
    text[..at].chars().next_back().is_some_and(|c| c.is_ascii_digit())
}

fn digit_at(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(|c| c.is_ascii_digit())
}

fn alnum_before(text: &str, at: usize) -> bool {
    text[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
}

fn alnum_at(text: &str, at: usize) -> bool {
    text[at..].chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn not_money(text: &str, end: usize) -> bool {
    let after = text[end..].trim_start();
    NOT_MONEY.iter().any(|w| after.starts_with(w))
}

fn money_context(text: &str, start: usize) -> bool {
    // The four characters before the number.
    let from = text[..start].char_indices().rev().nth(3).map_or(0, |(at, _)| at);
    let before = &text[from..start];
    // Four characters at most: looking for each word in turn costs more than the text is long.
    before
        .char_indices()
        .any(|(at, _)| MONEY_CONTEXT.iter().any(|w| before[at..].starts_with(w)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_chinese_amounts_become_yuan() {
        assert_eq!(parse_chinese_amount("八千多"), Some((8000, true)));
        assert_eq!(parse_chinese_amount("两万六"), Some((26000, false)));
        assert_eq!(parse_chinese_amount("一万九"), Some((19000, false)));
        assert_eq!(parse_chinese_amount("三十多万"), Some((300_000, true)));
        assert_eq!(parse_chinese_amount("一千二百"), Some((1200, false)));
        assert_eq!(parse_chinese_amount("三千"), Some((3000, false)));
    }
}
