//! The consumer groups and the streams each reads.

/// The consumer groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    EmailVerification,
    /// Notification rows (what `GET /v1/notifications` lists).
    Notifications,
    /// The emails that go with them, in a group of their own so that mail never delays the rows.
    NotificationEmails,
}

impl Group {
    pub const ALL: [Group; 3] = [
        Group::EmailVerification,
        Group::Notifications,
        Group::NotificationEmails,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::EmailVerification => "email-verification",
            Group::Notifications => "notifications",
            Group::NotificationEmails => "notification-emails",
        }
    }

    pub fn streams(self) -> &'static [streambank_events::Stream] {
        use streambank_events::Stream;
        match self {
            Group::EmailVerification => &[Stream::Users],
            Group::Notifications | Group::NotificationEmails => {
                &[Stream::Accounts, Stream::Transfers]
            }
        }
    }
}
