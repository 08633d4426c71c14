//! virsh's command-string mode: `virsh [OPTIONS] 'cmd1 args; cmd2 args'`.
//! A single argument after the global options is a command string, split
//! into commands at `;` and into words at blanks, with quoting and
//! backslash escapes as virsh's parser has them.

/// Split argv into the program name plus global options, and the rest.
/// Only the global options vsh defines are recognised; anything else ends
/// the global part (clap then reports it).
pub fn split_globals(args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut globals: Vec<String> = args.iter().take(1).cloned().collect();
    let mut i = 1;
    while let Some(a) = args.get(i) {
        let with_value = matches!(a.as_str(), "-c" | "--connect" | "--gateway");
        let inline = a.starts_with("--connect=")
            || a.starts_with("--gateway=")
            || (a.starts_with("-c") && a.len() > 2 && !a.starts_with("--"));
        let flag = matches!(a.as_str(), "-q" | "--quiet");
        if with_value {
            globals.extend(args.iter().skip(i).take(2).cloned());
            i += 2;
        } else if inline || flag {
            globals.push(a.clone());
            i += 1;
        } else {
            break;
        }
    }
    (globals, args.iter().skip(i).cloned().collect())
}

/// Split a command string into commands and their words. Single quotes
/// keep everything literally, double quotes allow `\` escapes, a `\`
/// outside quotes escapes the next character; `;` outside quotes ends a
/// command and empty commands are dropped.
pub fn split_commands(s: &str) -> Result<Vec<Vec<String>>, String> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ';' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                if !words.is_empty() {
                    commands.push(std::mem::take(&mut words));
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("missing '".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("dangling \\".to_owned()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("missing \"".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("dangling \\".to_owned()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if !words.is_empty() {
        commands.push(words);
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn globals_are_separated_from_the_command() {
        let (g, r) = split_globals(&v(&["vsh", "-c", "test:///default", "-q", "list", "--all"]));
        assert_eq!(g, v(&["vsh", "-c", "test:///default", "-q"]));
        assert_eq!(r, v(&["list", "--all"]));
        let (g, r) = split_globals(&v(&["vsh", "--gateway=unix:/s", "-ctest:///", "uri; list"]));
        assert_eq!(g, v(&["vsh", "--gateway=unix:/s", "-ctest:///"]));
        assert_eq!(r, v(&["uri; list"]));
        let (g, r) = split_globals(&v(&["vsh", "--help"]));
        assert_eq!(g, v(&["vsh"]));
        assert_eq!(r, v(&["--help"]));
    }

    #[test]
    fn command_strings_split_like_virsh() {
        assert_eq!(
            split_commands("uri;uri").ok(),
            Some(vec![v(&["uri"]), v(&["uri"])])
        );
        assert_eq!(
            split_commands("define d.xml; list --all ;").ok(),
            Some(vec![v(&["define", "d.xml"]), v(&["list", "--all"])])
        );
        assert_eq!(
            split_commands(
                r#"snapshot-create-as test s1 'first snap'; domstate "test"; domstate \test"#
            )
            .ok(),
            Some(vec![
                v(&["snapshot-create-as", "test", "s1", "first snap"]),
                v(&["domstate", "test"]),
                v(&["domstate", "test"])
            ])
        );
        assert_eq!(split_commands("a 'b;c'").ok(), Some(vec![v(&["a", "b;c"])]));
        assert_eq!(split_commands("list ''").ok(), Some(vec![v(&["list", ""])]));
        assert_eq!(split_commands("  ").ok(), Some(Vec::<Vec<String>>::new()));
        assert!(split_commands("list 'x").is_err());
    }
}
