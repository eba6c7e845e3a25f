//! The bot's commands: drivers' in private chats, the team's in the responders' and supervisors' chats.

use teloxide::utils::command::{BotCommands, ParseError};

/// What a driver can ask the bot in a private chat.
#[derive(BotCommands, Debug, Clone, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub enum DriverCommand {
    #[command(description = "这个机器人能做什么")]
    Start,
    #[command(description = "使用说明")]
    Help,
    #[command(description = "查看我的工单和进度")]
    Status,
}

/// What the response team can do from its chats.
#[derive(BotCommands, Debug, Clone, PartialEq, Eq)]
#[command(rename_rule = "lowercase")]
pub enum TeamCommand {
    #[command(description = "待处理的工单，最紧急的在前")]
    Queue,
    #[command(description = "我负责的工单")]
    Mine,
    #[command(description = "认领工单：/claim 工单号", parse_with = ticket)]
    Claim(i64),
    #[command(description = "回复司机：/reply 工单号 内容", parse_with = ticket_and_text)]
    Reply(i64, String),
    #[command(description = "内部备注（司机看不到）：/note 工单号 内容", parse_with = ticket_and_text)]
    Note(i64, String),
    #[command(description = "转交：/transfer 工单号 姓名（或回复同事的消息）", parse_with = ticket_and_rest)]
    Transfer(i64, String),
    #[command(description = "办结：/resolve 工单号 [说明]", parse_with = ticket_and_rest)]
    Resolve(i64, String),
    #[command(description = "重新打开：/reopen 工单号", parse_with = ticket)]
    Reopen(i64),
    #[command(description = "今天的数据")]
    Stats,
    #[command(description = "私信我网页工作台的一次性登录链接")]
    Login,
    #[command(description = "命令说明")]
    Help,
}

/// `N` or `#N`: a ticket number.
fn number(word: &str) -> Result<i64, ParseError> {
    word.trim_start_matches('#')
        .parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ParseError::Custom(format!("“{word}”不是工单号").into()))
}

fn split(input: &str) -> (&str, &str) {
    let input = input.trim();
    match input.split_once(char::is_whitespace) {
        Some((first, rest)) => (first, rest.trim()),
        None => (input, ""),
    }
}

fn ticket(input: String) -> Result<(i64,), ParseError> {
    match split(&input) {
        ("", _) => Err(ParseError::Custom("请写上工单号".into())),
        (n, "") => Ok((number(n)?,)),
        (_, _) => Err(ParseError::Custom("只需要工单号".into())),
    }
}

fn ticket_and_text(input: String) -> Result<(i64, String), ParseError> {
    match split(&input) {
        ("", _) => Err(ParseError::Custom("请写上工单号和内容".into())),
        (_, "") => Err(ParseError::Custom("请在工单号后写上内容".into())),
        (n, text) => Ok((number(n)?, text.to_owned())),
    }
}

fn ticket_and_rest(input: String) -> Result<(i64, String), ParseError> {
    match split(&input) {
        ("", _) => Err(ParseError::Custom("请写上工单号".into())),
        (n, rest) => Ok((number(n)?, rest.to_owned())),
    }
}

/// A command's error as the team reads it.
pub fn explain(error: &ParseError) -> String {
    match error {
        ParseError::Custom(e) | ParseError::IncorrectFormat(e) => e.to_string(),
        ParseError::TooFewArguments { .. } => "参数不够".into(),
        ParseError::TooManyArguments { .. } => "参数太多".into(),
        ParseError::UnknownCommand(c) => format!("没有 {c} 这个命令"),
        ParseError::WrongBotName(name) => format!("这个命令是给 @{name} 的"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_commands_take_a_ticket_number_and_the_rest_of_the_line() {
        assert_eq!(
            TeamCommand::parse("/claim 12", "suqiu_bot").unwrap(),
            TeamCommand::Claim(12)
        );
        assert_eq!(
            TeamCommand::parse("/claim #12", "suqiu_bot").unwrap(),
            TeamCommand::Claim(12)
        );
        assert_eq!(
            TeamCommand::parse("/reply@suqiu_bot 7 救援车 半小时到", "suqiu_bot").unwrap(),
            TeamCommand::Reply(7, "救援车 半小时到".into())
        );
        assert_eq!(
            TeamCommand::parse("/resolve 7", "suqiu_bot").unwrap(),
            TeamCommand::Resolve(7, String::new())
        );
    }

    #[test]
    fn wrong_arguments_are_explained() {
        let no_number = TeamCommand::parse("/claim", "suqiu_bot").unwrap_err();
        assert_eq!(explain(&no_number), "请写上工单号");
        let not_a_number = TeamCommand::parse("/claim 十二", "suqiu_bot").unwrap_err();
        assert_eq!(explain(&not_a_number), "“十二”不是工单号");
        let no_text = TeamCommand::parse("/reply 12", "suqiu_bot").unwrap_err();
        assert_eq!(explain(&no_text), "请在工单号后写上内容");
        let other_bot = TeamCommand::parse("/queue@other_bot", "suqiu_bot").unwrap_err();
        assert!(matches!(other_bot, ParseError::WrongBotName(_)));
    }
}
