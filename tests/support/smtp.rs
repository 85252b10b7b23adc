//! An SMTP stand-in (RFC 5321's server side, just enough for one client): greets,
//! answers EHLO, takes MAIL FROM, RCPT TO and DATA (dot-unstuffed), and records each
//! message with its envelope.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message as the server received it.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// A header's value (the first, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut lines = self.data.split("\r\n").take_while(|l| !l.is_empty());
        let first = lines.find(|l| l.to_ascii_lowercase().starts_with(&prefix))?;
        Some(first[prefix.len()..].trim().to_string())
    }

    /// The body after the headers.
    pub fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }
}

pub struct SmtpStandIn {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpStandIn {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let recorded = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 stand-in ESMTP ready\r\n").await;
                    let mut mail = Mail::default();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let verb = line.to_ascii_uppercase();
                        let answer: &[u8] = if verb.starts_with("EHLO") {
                            b"250-stand-in\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
                        } else if verb.starts_with("HELO")
                            || verb.starts_with("RSET")
                            || verb.starts_with("NOOP")
                        {
                            b"250 OK\r\n"
                        } else if verb.starts_with("MAIL FROM:") {
                            mail = Mail {
                                from: address(&line),
                                ..Mail::default()
                            };
                            b"250 OK\r\n"
                        } else if verb.starts_with("RCPT TO:") {
                            mail.to.push(address(&line));
                            b"250 OK\r\n"
                        } else if verb == "DATA" {
                            let _ = write
                                .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                                .await;
                            while let Ok(Some(data)) = lines.next_line().await {
                                if data == "." {
                                    break;
                                }
                                let unstuffed = data.strip_prefix('.').unwrap_or(&data);
                                mail.data.push_str(unstuffed);
                                mail.data.push_str("\r\n");
                            }
                            recorded.lock().unwrap().push(std::mem::take(&mut mail));
                            b"250 OK: queued\r\n"
                        } else if verb == "QUIT" {
                            let _ = write.write_all(b"221 Bye\r\n").await;
                            break;
                        } else {
                            b"502 Command not implemented\r\n"
                        };
                        if write.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { addr, mails }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits (bounded: 10 s) for the `n`th message.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        for _ in 0..500 {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} mails expected, got {:?}", self.mails());
    }
}

/// `MAIL FROM:<a@b> SIZE=…` → `a@b`.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}
